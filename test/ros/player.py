# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Play a synthetic flight as live ROS 2 topics, and record what the node publishes.

What ``vssm-synth`` writes into a bag, published instead on a timeline (RealSense-like topics,
``/tf_static`` latched, ground truth on ``/ground_truth/pose``), with every stamp moved to the
wall clock at the start of the play so that "image stamp -> odometry received" is a latency.
The node's end-to-end tests and ``tools/node_latency.py`` drive the node with it (a test
harness: it lives under test/, with the ROS venv's Python)::

    .venv-ros/bin/python test/ros/player.py --config config/demo.yaml --speed 1.0

``OutputRecorder`` subscribes to the node's outputs and keeps a compact, JSON-able record of
each message (stamps, receive times, poses, sizes).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from vssm_ros.config import SyntheticConfig, load_config
from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.bags import stream_messages
from vssm_ros.data.synthetic import SyntheticFlight, generate_flight, realsense_layout
from vssm_ros.ros.node import message_types, msg_class

Message = Tuple[str, str, int, Any]
"""(topic, ROS type name, stamp ns, message)."""

LATCHED = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                     reliability=ReliabilityPolicy.RELIABLE)


def flight_messages(flight: SyntheticFlight,
                    frames: Optional[Sequence[int]] = None) -> List[Message]:
    """The flight's messages in stamp order, as ``vssm-synth`` writes them to a bag, built
    with rclpy's classes (``Player.play`` moves their stamps to the wall clock).

    Args:
        flight: the flight.
        frames: only the frames from the first to the last of these indices (with their IMU
            and ground truth); None: all.
    """
    items = flight.items()
    if frames is not None:
        stamps = flight.frame_stamps_ns[list(frames)]
        items = flight.items(start_ns=int(stamps.min()), end_ns=int(stamps.max()) + 1)
    return list(stream_messages(items, realsense_layout(flight), message_types()))


def restamp(msg: Any, stamp_ns: int) -> None:
    """Set the header stamp(s) of a built message (TFMessage: of each transform)."""
    heads = [t.header for t in msg.transforms] if hasattr(msg, 'transforms') else [msg.header]
    for h in heads:
        h.stamp.sec, h.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)


class Player:
    """Publishes messages on their timeline from a node (one publisher per topic; ``qos``
    overrides the QoS of some topics, e.g. a volatile /tf_static as a bag recorded without
    QoS metadata plays it)."""

    def __init__(self, node: Node, qos: Optional[Dict[str, QoSProfile]] = None) -> None:
        self.node = node
        self._pubs: Dict[str, Any] = {}
        self.qos = {'/tf_static': LATCHED, **(qos or {})}

    def publisher(self, topic: str, type_name: str) -> Any:
        if topic not in self._pubs:
            qos = self.qos.get(topic, QoSProfile(depth=100))
            self._pubs[topic] = self.node.create_publisher(msg_class(type_name), topic, qos)
        return self._pubs[topic]

    def wait_for_subscribers(self, messages: Sequence[Message], topics: Sequence[str],
                             timeout_s: float) -> bool:
        """Create the publishers of ``messages`` and wait until each of ``topics`` has a
        subscriber (so that nothing is published before the node listens)."""
        for topic, type_name, _, _ in messages:
            self.publisher(topic, type_name)
        return wait_until(lambda: all(self._pubs[t].get_subscription_count() > 0
                                      for t in topics), timeout_s)

    def play(self, messages: Iterable[Message], speed: float = 1.0,
             stamp_offset_ns: Optional[int] = None,
             gate: Optional[Callable[[str, int], None]] = None) -> int:
        """Publish each message when its time comes, (stamp - first stamp) / speed after the
        start, with its stamps moved by ``stamp_offset_ns`` (None: so that the first stamp is
        the wall-clock time of the start; at speed 1 every stamp is then its publication time).
        ``gate(topic, new stamp)``, when given, is called before each message and may block:
        the timeline pauses meanwhile (e.g. to wait for the node: lockstep).

        Returns:
            The offset added to the stamps (ns).
        """
        messages = list(messages)
        for topic, type_name, _, _ in messages:
            self.publisher(topic, type_name)
        if not messages:
            return 0
        first = messages[0][2]
        start = time.time_ns()
        offset = start - first if stamp_offset_ns is None else int(stamp_offset_ns)
        for topic, _, stamp, msg in messages:
            wait = (start + (stamp - first) / speed - time.time_ns()) * 1e-9
            if wait > 0:
                time.sleep(wait)
            if gate is not None:
                t0 = time.time_ns()
                gate(topic, stamp + offset)
                start += time.time_ns() - t0
            restamp(msg, stamp + offset)
            self._pubs[topic].publish(msg)
        return offset


class OutputRecorder:
    """Subscribes to the node's outputs (under ``namespace``) and records each message."""

    def __init__(self, node: Node, namespace: str = '/vssm') -> None:
        self.node = node
        self.lock = threading.Lock()
        self.records: Dict[str, List[Dict[str, Any]]] = {}
        qos = {outputs.MAP_CLOUD: LATCHED, outputs.COST_SLICE: LATCHED,
               outputs.TF: QoSProfile(depth=100)}
        self._subs = []
        for name, type_name in outputs.MSG_TYPES.items():
            if name == outputs.TF_STATIC:
                continue
            self.records[name] = []
            self._subs.append(node.create_subscription(
                msg_class(type_name), outputs.topic_name(name, namespace),
                lambda msg, n=name: self._on(n, msg), qos.get(name, QoSProfile(depth=100))))

    def _on(self, name: str, msg: Any) -> None:
        rec = {'recv_ns': time.time_ns()}
        rec.update(_summary(name, msg))
        with self.lock:
            self.records[name].append(rec)

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.records[name])

    def last(self, name: str) -> Optional[Dict[str, Any]]:
        with self.lock:
            return self.records[name][-1] if self.records[name] else None

    def snapshot(self) -> Dict[str, List[Dict[str, Any]]]:
        with self.lock:
            return {k: list(v) for k, v in self.records.items()}


def _summary(name: str, msg: Any) -> Dict[str, Any]:
    """The JSON-able facts of one output message that tests and tools look at."""
    if name == outputs.TF:
        return {'transforms': [{'stamp_ns': M.header_stamp_ns(t), 'parent': t.header.frame_id,
                                'child': t.child_frame_id,
                                'T': M.transform_to_matrix(t).tolist()} for t in msg.transforms]}
    if name == outputs.DIAGNOSTICS:
        return {'status': [{'name': s.name, 'level': int.from_bytes(bytes(s.level), 'little'),
                            'message': s.message,
                            'values': {kv.key: kv.value for kv in s.values}}
                           for s in msg.status]}
    if name == outputs.STATUS:
        return {'level': int.from_bytes(bytes(msg.level), 'little'), 'message': msg.message,
                'values': {kv.key: kv.value for kv in msg.values}}
    out: Dict[str, Any] = {'stamp_ns': M.header_stamp_ns(msg), 'frame_id': msg.header.frame_id}
    if name == outputs.ODOMETRY:
        tw = msg.twist.twist.angular
        out.update(child=msg.child_frame_id, T=M.pose_from_msg(msg).T_world_body.tolist(),
                   cov=np.asarray(msg.pose.covariance, dtype=float).tolist(),
                   angular=[tw.x, tw.y, tw.z],
                   twist_cov=np.asarray(msg.twist.covariance, dtype=float).tolist())
    elif name == outputs.PREDICTED_PATH:
        out.update(n_poses=len(msg.poses),
                   xyz=[M.pose_from_msg(p).T_world_body[:3, 3].tolist() for p in msg.poses])
    elif name == outputs.PREDICTED_POSE:
        out.update(T=M.pose_from_msg(msg).T_world_body.tolist(),
                   cov=np.asarray(msg.pose.covariance, dtype=float).tolist())
    elif name == outputs.COST_SLICE:
        data = np.asarray(msg.data, dtype=np.int8)
        out.update(width=int(msg.info.width), height=int(msg.info.height),
                   resolution=float(msg.info.resolution), z=float(msg.info.origin.position.z),
                   known=float((data >= 0).mean()) if data.size else 0.0)
    elif name == outputs.PATH:
        out.update(n_poses=len(msg.poses),
                   last_stamp_ns=M.header_stamp_ns(msg.poses[-1]) if msg.poses else None)
    elif name == outputs.MAP_CLOUD:
        pts = M.pointcloud2_to_numpy(msg)
        occ = pts.get('occupancy', np.zeros(0))
        out.update(n_points=int(msg.width) * int(msg.height), fields=sorted(pts),
                   occupancy=[float(occ.min()), float(occ.max())] if occ.size else None)
    else:   # predicted images
        px = M.image_to_numpy(msg)
        out.update(width=int(msg.width), height=int(msg.height), encoding=msg.encoding,
                   finite=float(np.isfinite(px).mean()))
    return out


def call_trigger(node: Node, service: str, timeout_s: float = 30.0) -> Tuple[bool, str]:
    """Call a std_srvs/Trigger service (the node is spun elsewhere). Returns (success,
    message); (False, why) when the service is not there or does not answer in time."""
    trigger = importlib.import_module('std_srvs.srv').Trigger
    client = node.create_client(trigger, service)
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return False, f'service {service} not available after {timeout_s} s'
        future = client.call_async(trigger.Request())
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            return False, f'service {service} did not answer in {timeout_s} s'
        res = future.result()
        return bool(res.success), str(res.message)
    finally:
        node.destroy_client(client)


class Session:
    """rclpy initialised, one node spinning in a background thread: ``with Session() as s``."""

    def __init__(self, name: str = 'vssm_player', args: Optional[List[str]] = None) -> None:
        rclpy.init(args=args)
        self.node = rclpy.create_node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:   # shutdown while spinning
            pass

    def __enter__(self) -> 'Session':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()
        self._thread.join(5.0)


def wait_until(predicate, timeout_s: float, period_s: float = 0.05) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passed; its last value."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        time.sleep(period_s)
    return True


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog='test/ros/player.py',
        description='Publish the synthetic flight as live ROS 2 topics (RealSense-like names, '
                    'stamps moved to now), e.g. to try vssm-node without a bag.')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='YAML file(s) with a "synthetic:" section (default: the built-in flight)')
    p.add_argument('--speed', type=float, default=1.0, help='playback speed (1: real time)')
    args = p.parse_args(argv)
    if not args.speed > 0:
        p.error('--speed must be > 0')
    flight = generate_flight(load_config(args.config, SyntheticConfig, section='synthetic'))
    msgs = flight_messages(flight)
    with Session() as s:
        Player(s.node).play(msgs, args.speed)
    print(f'published {len(msgs)} messages ({flight.n_frames} frames)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
