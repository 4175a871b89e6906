# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-node: the ROS 2 node (``ros2 run vssm_ros vssm_node``, ``ros2 launch vssm_ros
drone.launch.py``).

Subscribes (QoS from ``node.qos_*``; sensor-data, best effort, by default):
  ``topics.rgb``, ``topics.depth``, ``topics.camera_info`` (sensor_msgs/Image, CameraInfo),
  ``topics.imu`` (sensor_msgs/Imu) (by default through a second process, the node
  ``vssm_inputs``: ``node.input_process``, ``vssm_ros.ros.input_relay``), ``/tf_static``
  (twice, reliable: transient local for latched publishers, and volatile so that a bag played
  without QoS metadata, which offers it volatile, is heard too), ``topics.ground_truth``
  (geometry_msgs/PoseStamped) only for engine.init_pose 'ground_truth', and
  ``/initialpose`` (RViz's "2D Pose Estimate") and ``~/set_pose`` (6-DoF),
  geometry_msgs/PoseWithCovarianceStamped, to set the pose.
Publishes (stamped with image stamps):
  ``/tf`` (map -> odom, and odom -> base_link when frames.standalone), ``~/odometry``
  (nav_msgs/Odometry with covariance), ``~/path`` (nav_msgs/Path), ``~/map_cloud``
  (sensor_msgs/PointCloud2 x y z rgb occupancy, transient local, every
  outputs.map_cloud_period_s), ``~/predicted/depth``, ``~/predicted/depth_std`` (32FC1 metres),
  ``~/predicted/color`` (rgb8; every outputs.predicted_period_s), ``~/predicted/path``
  (nav_msgs/Path, the mean rollout) and ``~/predicted/pose`` (PoseWithCovarianceStamped, its
  end and spread; every outputs.predicted_path_period_s), ``~/cost_slice``
  (nav_msgs/OccupancyGrid at flight height, transient local, every
  outputs.cost_slice_period_s), ``~/status`` (diagnostic_msgs/DiagnosticStatus per frame),
  ``/diagnostics`` (every node.diagnostics_period_s of wall time, also when /clock stops).
Services (std_srvs/Trigger): ``~/save_map`` and ``~/load_map`` (the file is the parameter
  ``node.map_path``, which may be set at run time), ``~/reset``; they run between two frames
  (the engine lock). A save is atomic (the previous file survives a crash mid-save); a bad
  file to load is refused with the reason and the current map kept. The map is also saved to
  ``node.map_path`` every ``node.autosave_period_s`` (slam mode).
Parameters: every field of ``vssm_ros.config.VssmConfig`` (see docs/parameters.md), read at
  start-up; invalid values stop the node with exit code 2 and one log line.

The work is done by ``vssm_ros.ros.live.LiveSlam`` and the ``SlamSession`` it drives; this
module is the rclpy wiring. Shut-down (Ctrl-C, SIGTERM) is bounded: the frame in progress
finishes (its outputs are dropped once the context is shut down), or the process exits after
``SHUTDOWN_WAIT_S`` without waiting for it; the exit code is 0.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import signal
import sys
import threading
from typing import Any, Dict, List, Optional

import rclpy
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import SetParametersResult
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

try:   # Jazzy
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:   # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

from vssm_ros.data import outputs
from vssm_ros.data.messages import MsgTypes
from vssm_ros.errors import ConfigError, VssmError
from vssm_ros.ros.input_relay import InputRelay, RelayInput, msg_class, sensor_qos
from vssm_ros.ros.live import LiveSlam
from vssm_ros.ros.params import declare_config

NODE_NAME = 'vssm'
MESSAGE_PACKAGES = ('builtin_interfaces', 'std_msgs', 'sensor_msgs', 'geometry_msgs',
                    'nav_msgs', 'tf2_msgs', 'diagnostic_msgs')
RUNTIME_PARAMETERS = ('node.map_path', 'use_sim_time')
"""Parameters that may change while the node runs; the others are read at start-up."""
NO_EVENTS_PUB = PublisherEventCallbacks(use_default_callbacks=False)
NO_EVENTS_SUB = SubscriptionEventCallbacks(use_default_callbacks=False)
"""Event callbacks of the publishers and of the subscriptions other than the sensor inputs:
none. rclpy's defaults (a warning on incompatible QoS or type) add two event handlers to each,
and its executor rebuilds every handler into the wait set, in Python, at each message it takes
(the IMU: 200 a second), holding the GIL the engine thread needs. Live on the demo flight, in
8 alternating runs, 144-212 frames of 321 processed (latency p95 0.66-0.92 s) with them,
160-244 (0.26-0.55 s) without (docs/performance.md, session 20). A subscriber with an
incompatible QoS still gets rclpy's warning on its side."""


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
        self.types = message_types()
        self.live = LiveSlam(self.cfg, self.types, self._publish, self._log, self._now_ns)
        self._pubs = self._make_publishers()
        self.relay: Optional[InputRelay] = None
        self._subs = self._make_subscriptions()
        services = MutuallyExclusiveCallbackGroup()
        self._srvs = [
            self.create_service(Trigger, '~/save_map', self._save_map, callback_group=services),
            self.create_service(Trigger, '~/load_map', self._load_map, callback_group=services),
            self.create_service(Trigger, '~/reset', self._reset, callback_group=services),
        ]
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Wall time, not the node clock: under use_sim_time a bag's /clock stops at its end.
        self._diag_timer = self.create_timer(self.cfg.node.diagnostics_period_s,
                                             self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        if self.cfg.node.mode == 'localization':
            self._load_at_start()
        self.live.start()
        if self.relay is not None:
            self.relay.start()
        topics = ', '.join(f'{r}={t}' for r, t in self.live.topics.items() if t)
        self.get_logger().info(f'vssm_ros SLAM node up on {self.cfg.engine.device}; inputs: '
                               f'{topics}; map file for ~/save_map, ~/load_map: '
                               f'{self.map_path}{self._autosave_note()}')

    map_path = property(lambda self: self.live.map_path)

    def _autosave_note(self) -> str:
        a = self.live.autosave
        return f' (autosaved every {a.period_s:g} s)' if a.enabled else ' (no autosave)'

    # ------------------------------------------------------------------ wiring

    def _load_at_start(self) -> None:
        ok, text = self.live.load_map(self.map_path)
        if not ok and not os.path.exists(os.path.expanduser(self.map_path)):
            raise ConfigError(f"node.mode 'localization' needs a map: {self.map_path} does not "
                              'exist (save one with ~/save_map in slam mode)')
        if not ok:
            raise ConfigError(f'node.mode localization: {text}')
        self.get_logger().info(f'localization mode: {text}; set the pose with /initialpose '
                               'or ~/set_pose')

    def _make_publishers(self) -> Dict[str, Any]:
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        qos = {outputs.TF: QoSProfile(depth=100), outputs.MAP_CLOUD: latched,
               outputs.COST_SLICE: latched}
        pubs = {}
        for name, type_name in outputs.MSG_TYPES.items():
            if name == outputs.TF_STATIC:
                continue   # the node reads /tf_static, it does not publish it
            topic = name if name.startswith('/') else f'~/{name}'
            pubs[name] = self.create_publisher(msg_class(type_name), topic,
                                               qos.get(name, QoSProfile(depth=10)),
                                               event_callbacks=NO_EVENTS_PUB)
        return pubs

    def _make_subscriptions(self) -> List[Any]:
        n = self.cfg.node

        def sensor(depth: int) -> QoSProfile:
            return sensor_qos(n.qos_reliability, depth)

        def subscribe(cls: Any, topic: str, callback: Any, qos: QoSProfile,
                      warn_incompatible: bool = False) -> Any:
            # One mutually exclusive group per subscription: each topic's messages are handled
            # one at a time, in order, also under a multi-threaded executor (LiveSlam's
            # intake is thread-safe).
            events = None if warn_incompatible else NO_EVENTS_SUB
            return self.create_subscription(cls, topic, self._guarded(callback), qos,
                                            callback_group=MutuallyExclusiveCallbackGroup(),
                                            event_callbacks=events)

        t = self.live.topics
        intake = self.live.intake
        image, info = 'sensor_msgs/msg/Image', 'sensor_msgs/msg/CameraInfo'
        sensors = [(role, kind, lambda msg, r=role: intake.on_camera(r, msg), n.qos_depth)
                   for role, kind in (('rgb', image), ('depth', image), ('camera_info', info))
                   if t[role]]
        sensors.append(('imu', 'sensor_msgs/msg/Imu', intake.on_imu, n.imu_qos_depth))

        def subscribe_sensors() -> List[Any]:
            # The sensor inputs keep rclpy's default warning for a publisher whose QoS does
            # not match (best effort vs reliable: no message would ever arrive).
            return [subscribe(msg_class(kind), t[role], callback, sensor(depth),
                              warn_incompatible=True) for role, kind, callback, depth in sensors]

        if not n.input_process:
            subs = subscribe_sensors()
        else:
            # Should the input process end, the node subscribes itself (slower, not blind).
            self.relay = InputRelay(
                [RelayInput(self.resolve_topic_name(t[role]), kind, depth,
                            self._guarded(callback)) for role, kind, callback, depth in sensors],
                n.qos_reliability, f'{NODE_NAME}_inputs', self.get_namespace(), self._log,
                on_end=lambda: self._subs.extend(subscribe_sensors()))
            self.live.input_state = self.relay.state
            subs = []
        # Latched publishers (robot_state_publisher, a driver) need a transient-local
        # subscription; a volatile one hears a bag played without QoS metadata, which offers
        # /tf_static volatile (the first is incompatible with it, silently).
        for durability in (DurabilityPolicy.TRANSIENT_LOCAL, DurabilityPolicy.VOLATILE):
            subs.append(subscribe(TFMessage, t['tf_static'], self.live.intake.on_tf_static,
                                  QoSProfile(depth=100, durability=durability,
                                             reliability=ReliabilityPolicy.RELIABLE)))
        subs.append(subscribe(PoseWithCovarianceStamped, '/initialpose',
                              lambda msg: self._set_pose(msg, True), QoSProfile(depth=1)))
        subs.append(subscribe(PoseWithCovarianceStamped, '~/set_pose',
                              lambda msg: self._set_pose(msg, False), QoSProfile(depth=1)))
        if not self.cfg.frames.standalone:   # map -> odom needs the external odom -> body
            subs.append(subscribe(TFMessage, '/tf', self.live.intake.on_tf, QoSProfile(depth=100)))
        if t['ground_truth']:
            subs.append(subscribe(PoseStamped, t['ground_truth'], self.live.intake.on_ground_truth,
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

    def _set_pose(self, msg: Any, planar: bool) -> None:
        ok, text = self.live.set_pose(msg, planar)
        self._log('info' if ok else 'warn', f'{"/initialpose" if planar else "~/set_pose"}: '
                  f'{text}')

    def _publish(self, name: str, msg: Any) -> None:
        # After Ctrl-C the context is shut down while the worker may finish a frame: its
        # outputs are dropped, not an error.
        if not self.context.ok():
            return
        try:
            self._pubs[name].publish(msg)
        except Exception:
            if self.context.ok():
                raise

    def _log(self, level: str, text: str) -> None:
        # After Ctrl-C the worker may still log (a status change in its last frame): /rosout
        # is gone with the context, so the line goes to stderr.
        if not self.context.ok():
            print(f'[{level.upper()}] [vssm]: {text}', file=sys.stderr)
            return
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
                self.live.map_path = p.value   # ~/save_map, ~/load_map and the autosave
        return SetParametersResult(successful=True)

    def destroy_node(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        self.live.stop()
        super().destroy_node()


GIL_SWITCH_INTERVAL_S = 0.0002
"""Python's GIL switch interval in the node (see ``main``)."""
SHUTDOWN_WAIT_S = 3.0
"""At shut-down, how long the frame in progress may take to finish before the process exits
without it (well inside launch's 5 s before it escalates to SIGTERM)."""


_INTERRUPTED = threading.Event()
"""Set by the node's SIGINT handler (``_on_sigint``)."""


def _on_sigint(signum: int, frame: Any) -> None:
    """Python's SIGINT handler in the node, which rclpy's own handler chains to: Python's
    default (a KeyboardInterrupt), remembered, so that ``main`` knows a Ctrl-C from an error
    even where rclpy's bindings report the KeyboardInterrupt as something else."""
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    """Run the node until shut down (Ctrl-C, SIGTERM). Returns the exit code: 0, or 2 for an
    invalid configuration."""
    args = sys.argv if argv is None else argv
    # `kill -USR1 PID` prints every thread's stack to stderr: what a node that does not
    # answer is doing (it goes on running).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    _INTERRUPTED.clear()
    signal.signal(signal.SIGINT, _on_sigint)   # before rclpy.init, whose handler chains to it
    try:
        rclpy.init(args=args)
    except Exception as err:   # rcl's own errors: a bad --ros-args or params file
        print(f'vssm-node: error: {err}', file=sys.stderr)
        return 2
    node: Optional[VssmNode] = None
    executor: Optional[SingleThreadedExecutor] = None
    code = 0
    try:
        node = VssmNode()
        # The engine's step is thousands of short torch calls, each releasing and retaking the
        # GIL; with the default 5 ms switch interval a busy callback thread makes every
        # retake wait, which slowed step() several-fold in the live runs (at low CPU load).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # One callback thread: callbacks only convert and queue (the engine has its own
        # thread, and the diagnostics never wait for it), and rclpy's multi-threaded
        # executor spent more of the GIL handing callbacks to its pool: live on the demo
        # flight, 106-127 frames of 321 and latency p95 0.7-1.2 s with this one against 96-107
        # and 1.2-2.5 s (five runs each, docs/performance.md).
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # A Ctrl-C that lands while rclpy builds a received message in Python comes out of
        # pybind11 as "RuntimeError: Unable to convert call argument '0' to Python object"
        # (once in the shut-down test's Ctrl-Cs at random moments): a Ctrl-C all the same.
        if not _INTERRUPTED.is_set():
            raise
    except VssmError as err:
        rclpy.logging.get_logger(NODE_NAME).fatal(f'invalid configuration: {err}')
        code = 2
    finally:
        _shut_down(node, executor)
    if argv is None:   # the process is the node's (the console script): end it here
        _exit(code)
    return code


def _exit(code: int) -> None:
    """End the process once everything is shut down, without the interpreter's exit: that
    joins the executor's worker threads, and a Ctrl-C that landed inside one of their lock
    operations (a KeyboardInterrupt is not safe inside ``with lock:``) leaves the lock held
    and the join waiting forever (2 of 40 Ctrl-C under load hung so)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _shut_down(node: Optional[VssmNode], executor: Optional[SingleThreadedExecutor]) -> None:
    """Stop the worker, the executor and rclpy, at most ``SHUTDOWN_WAIT_S`` (a second Ctrl-C
    meanwhile is ignored: the shut-down is already bounded)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if node is not None and node.relay is not None:
        node.relay.stop()   # no more input (the child also ends with this process)
    stopped = node is None or node.live.stop(SHUTDOWN_WAIT_S)
    if not stopped:   # a frame still runs: do not wait for it, and do not tear rclpy under it
        _exit(0)
    if executor is not None:
        executor.shutdown(timeout_sec=1.0)
    if node is not None:
        node.live.session.close()   # its map's temporary files (atexit may not run)
        node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
