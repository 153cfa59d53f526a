"""rosbag2 files without ROS: read and write with ``rosbags`` (MCAP or sqlite3), Jazzy types."""
