# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
from glob import glob

from setuptools import find_packages, setup

package_name = 'vssm_ros'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=['vssm_ros', 'vssm_ros.*']),
    # Learned dynamics weights shipped with the package (engine.motion.weights by name).
    package_data={package_name: ['weights/*.safetensors']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.py') + glob('launch/*.yaml')),
        ('share/' + package_name + '/config', glob('config/*.yaml')),
        ('share/' + package_name + '/rviz', glob('rviz/*.rviz')),
    ],
    python_requires='>=3.10',
    # Ranges, not pins: Jetson users bring NVIDIA's torch build. Dev/CI pins live in
    # requirements-dev.txt.
    install_requires=[
        'setuptools',
        'torch>=2.1',
        'numpy>=1.23',
        'pyyaml>=5.4',
        'rosbags>=0.10',
        'safetensors>=0.4',
        'matplotlib>=3.5',
        'tqdm>=4.60',
        'pillow>=9.0',
    ],
    # Reading the training flights (vssm-train-dynamics) needs h5py; nothing else does.
    extras_require={'train': ['h5py>=3.0']},
    zip_safe=True,
    maintainer='vssm_ros maintainers',
    maintainer_email='vssm-ros@example.org',
    description='Variational SLAM (VSSM-LM) for drones: ROS 2 node and replay tools.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'vssm-synth = vssm_ros.cli.synth:main',
            'vssm-replay = vssm_ros.cli.replay:main',
            'vssm-demo = vssm_ros.cli.demo:main',
            'vssm-bench = vssm_ros.cli.bench:main',
            # The ROS 2 node: vssm-node like the other tools, vssm_node for
            # `ros2 run vssm_ros vssm_node` and the launch file (ROS executable naming).
            'vssm-node = vssm_ros.ros.node:main',
            'vssm_node = vssm_ros.ros.node:main',
            'vssm-train-dynamics = vssm_ros.cli.train_dynamics:main',
        ],
    },
)
