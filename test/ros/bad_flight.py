# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Bad messages put into a flight's message list, the same for the node (rclpy classes, played
by drive_node.py) and the replay (rosbags classes, written to a bag): a colour image in an
unsupported encoding and a non-finite IMU sample. Only attribute access: no rclpy import."""

RGB = '/camera/color/image_raw'
IMU = '/camera/imu'
BAD_FRAME = 10
"""Index of the frame whose colour image gets an unsupported encoding."""
BAD_IMU = 150
"""Index of the IMU sample that becomes non-finite."""
EXPECTED = {'rgb_encoding': 1, 'imu_non_finite': 1}
"""Bad input by reason that the corruption causes."""


def corrupt(messages):
    """Corrupt ``messages`` ((topic, type, stamp, msg) in stamp order) in place; returns the
    stamp of the frame that is now invalid."""
    n_rgb = n_imu = 0
    bad_stamp = None
    for topic, _, stamp, msg in messages:
        if topic == RGB:
            if n_rgb == BAD_FRAME:
                msg.encoding = 'yuv422'
                bad_stamp = stamp
            n_rgb += 1
        elif topic == IMU:
            if n_imu == BAD_IMU:
                msg.linear_acceleration.x = float('nan')
            n_imu += 1
    if bad_stamp is None or n_imu <= BAD_IMU:
        raise ValueError('the flight is too short to corrupt')
    return bad_stamp
