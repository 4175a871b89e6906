# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-node: the ROS 2 node (``ros2 run vssm_ros vssm_node``, ``ros2 launch vssm_ros
drone.launch.py``).

Subscribes (QoS from ``node.qos_*``; sensor-data, best effort, by default):
  ``topics.rgb``, ``topics.depth``, ``topics.camera_info`` (sensor_msgs/Image, CameraInfo),
  ``topics.imu`` (sensor_msgs/Imu), ``/tf_static`` (transient local), and
  ``topics.ground_truth`` (geometry_msgs/PoseStamped) only for engine.init_pose 'ground_truth'.
Publishes (stamped with image stamps):
  ``/tf`` (map -> odom, and odom -> base_link when frames.standalone), ``~/odometry``
  (nav_msgs/Odometry with covariance), ``~/path`` (nav_msgs/Path), ``~/map_cloud``
  (sensor_msgs/PointCloud2 x y z rgb occupancy, transient local, every
  outputs.map_cloud_period_s), ``~/predicted/depth``, ``~/predicted/depth_std`` (32FC1 metres),
  ``~/predicted/color`` (rgb8; every outputs.predicted_period_s), ``/diagnostics``.
Services (std_srvs/Trigger): ``~/save_map`` and ``~/load_map`` (the file is the parameter
  ``node.map_path``, which may be set at run time), ``~/reset``.
Parameters: every field of ``vssm_ros.config.VssmConfig`` (see docs/parameters.md), read at
  start-up; invalid values stop the node with exit code 2 and one log line.

The work is done by ``vssm_ros.ros.live.LiveSlam``; this module is the rclpy wiring.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Dict, List, Optional

import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult
from sensor_msgs.msg import CameraInfo, Image, Imu
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from vssm_ros.data import outputs
from vssm_ros.data.messages import MsgTypes
from vssm_ros.errors import VssmError
from vssm_ros.ros.live import LiveSlam
from vssm_ros.ros.params import declare_config

NODE_NAME = 'vssm'
MESSAGE_PACKAGES = ('builtin_interfaces', 'std_msgs', 'sensor_msgs', 'geometry_msgs',
                    'nav_msgs', 'tf2_msgs', 'diagnostic_msgs')
RUNTIME_PARAMETERS = ('node.map_path', 'use_sim_time')
"""Parameters that may change while the node runs; the others are read at start-up."""


def msg_class(type_name: str) -> Any:
    """The rclpy class of a ROS type name ('nav_msgs/msg/Odometry')."""
    pkg, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


def message_types() -> MsgTypes:
    """The message classes of the outputs (rclpy)."""
    return MsgTypes.from_modules({p: importlib.import_module(f'{p}.msg')
                                  for p in MESSAGE_PACKAGES})


class VssmNode(Node):
    """The SLAM node (see the module docstring).

    Raises:
        ConfigError: invalid or unknown parameters.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = declare_config(self)
        self.map_path = self.cfg.node.map_path
        self.types = message_types()
        self.live = LiveSlam(self.cfg, self.types, self._publish, self._log, self._now_ns)
        self._pubs = self._make_publishers()
        self._subs = self._make_subscriptions()
        services = MutuallyExclusiveCallbackGroup()
        self._srvs = [
            self.create_service(Trigger, '~/save_map', self._save_map, callback_group=services),
            self.create_service(Trigger, '~/load_map', self._load_map, callback_group=services),
            self.create_service(Trigger, '~/reset', self._reset, callback_group=services),
        ]
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_timer = self.create_timer(self.cfg.node.diagnostics_period_s,
                                             self._publish_diagnostics)
        self.live.start()
        topics = ', '.join(f'{r}={t}' for r, t in self.live.topics.items() if t)
        self.get_logger().info(f'vssm_ros SLAM node up on {self.cfg.engine.device}; inputs: '
                               f'{topics}; map file for ~/save_map, ~/load_map: '
                               f'{self.map_path}')

    # ------------------------------------------------------------------ wiring

    def _make_publishers(self) -> Dict[str, Any]:
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        qos = {outputs.TF: QoSProfile(depth=100), outputs.MAP_CLOUD: latched}
        pubs = {}
        for name, type_name in outputs.MSG_TYPES.items():
            if name == outputs.TF_STATIC:
                continue   # the node reads /tf_static, it does not publish it
            topic = name if name.startswith('/') else f'~/{name}'
            pubs[name] = self.create_publisher(msg_class(type_name), topic,
                                               qos.get(name, QoSProfile(depth=10)))
        return pubs

    def _make_subscriptions(self) -> List[Any]:
        n = self.cfg.node
        reliability = (ReliabilityPolicy.BEST_EFFORT if n.qos_reliability == 'best_effort'
                       else ReliabilityPolicy.RELIABLE)

        def sensor(depth: int) -> QoSProfile:
            return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                              reliability=reliability, durability=DurabilityPolicy.VOLATILE)

        def subscribe(cls: Any, topic: str, callback: Any, qos: QoSProfile) -> Any:
            # One mutually exclusive group per subscription: each topic's messages are handled
            # one at a time, in order, while different topics run in parallel (LiveSlam's
            # intake is thread-safe).
            return self.create_subscription(cls, topic, self._guarded(callback), qos,
                                            callback_group=MutuallyExclusiveCallbackGroup())

        t = self.live.topics
        subs = [subscribe(cls, t[role], lambda msg, r=role: self.live.on_camera(r, msg),
                          sensor(n.qos_depth))
                for role, cls in (('rgb', Image), ('depth', Image), ('camera_info', CameraInfo))
                if t[role]]
        subs.append(subscribe(Imu, t['imu'], self.live.on_imu, sensor(n.imu_qos_depth)))
        subs.append(subscribe(TFMessage, t['tf_static'], self.live.on_tf_static,
                              QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                         reliability=ReliabilityPolicy.RELIABLE)))
        if not self.cfg.frames.standalone:   # map -> odom needs the external odom -> body
            subs.append(subscribe(TFMessage, '/tf', self.live.on_tf, QoSProfile(depth=100)))
        if t['ground_truth']:
            subs.append(subscribe(PoseStamped, t['ground_truth'], self.live.on_ground_truth,
                                  sensor(n.qos_depth)))
        return subs

    def _guarded(self, callback: Any) -> Any:
        """``callback``, with any exception logged instead of stopping the executor."""
        def run(msg: Any) -> None:
            try:
                callback(msg)
            except Exception as err:   # a bug in one message must not stop the node
                self.get_logger().error(f'input callback failed: {type(err).__name__}: {err}',
                                        throttle_duration_sec=5.0)
        return run

    def _publish(self, name: str, msg: Any) -> None:
        self._pubs[name].publish(msg)

    def _log(self, level: str, text: str) -> None:
        # One call site per severity: rclpy's logger refuses a call site whose severity changes.
        logger = self.get_logger()
        if level == 'info':
            logger.info(text)
        elif level == 'warn':
            logger.warning(text)
        else:
            logger.error(text)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _publish_diagnostics(self) -> None:
        self._publish(outputs.DIAGNOSTICS, self.live.diagnostics(self._now_ns()))

    # ------------------------------------------------------------------ services, parameters

    @staticmethod
    def _respond(response: Any, result: Any) -> Any:
        response.success, response.message = bool(result[0]), str(result[1])
        return response

    def _save_map(self, request: Any, response: Any) -> Any:
        return self._respond(response, self.live.save_map(self.map_path))

    def _load_map(self, request: Any, response: Any) -> Any:
        return self._respond(response, self.live.load_map(self.map_path))

    def _reset(self, request: Any, response: Any) -> Any:
        return self._respond(response, self.live.reset('~/reset called'))

    def _on_set_parameters(self, params: List[Any]) -> SetParametersResult:
        for p in params:
            if p.name not in RUNTIME_PARAMETERS:
                return SetParametersResult(
                    successful=False, reason=f'{p.name} is read at start-up; restart the node '
                    f'to change it (run-time parameters: {", ".join(RUNTIME_PARAMETERS)})')
            if p.name == 'node.map_path' and (not isinstance(p.value, str) or not p.value):
                return SetParametersResult(successful=False,
                                           reason='node.map_path must be a non-empty string')
        for p in params:
            if p.name == 'node.map_path':
                self.map_path = p.value
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        self.live.stop()
        super().destroy_node()


EXECUTOR_THREADS = 2
"""Callback threads: callbacks only convert and queue, the engine has its own thread."""
GIL_SWITCH_INTERVAL_S = 0.0002
"""Python's GIL switch interval in the node (see ``main``)."""


def main(argv: Optional[List[str]] = None) -> int:
    """Run the node until shut down (Ctrl-C, SIGTERM). Returns the exit code: 0, or 2 for an
    invalid configuration."""
    args = sys.argv if argv is None else argv
    try:
        rclpy.init(args=args)
    except Exception as err:   # rcl's own errors: a bad --ros-args or params file
        print(f'vssm-node: error: {err}', file=sys.stderr)
        return 2
    try:
        node = VssmNode()
    except VssmError as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'invalid configuration: {err}')
        rclpy.try_shutdown()
        return 2
    # The engine's step is thousands of short torch calls, each releasing and retaking the
    # GIL; with the default 5 ms switch interval a busy callback thread makes every retake
    # wait, which slowed step() several-fold in the live runs (at low CPU load).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
