# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The sensor inputs received in a second process (``node.input_process``).

rclpy's executor is Python: each message it takes (the IMU: 200 a second) costs ~0.5 ms of
Python holding the GIL, and the engine thread waits for the GIL between its torch calls. A
Python thread holding the GIL 0.5 ms every 4 ms slowed the engine's step on the demo flight
by 10-20 %, the same load in another process by ~5 % (docs/performance.md, session 20). So the
node receives colour, depth, camera_info and IMU in a child process, ``vssm_inputs`` (a node
of its own, in the node's namespace, subscribed to the node's resolved topics with its QoS):
it takes each message serialised, without building it in Python, and writes it to a pipe; a
thread of the node reads the pipe and hands each message, deserialised in C, to the intake,
in the order the child received them. Should the child end on its own, the node is told
(``on_end``) and subscribes to the inputs itself.

The child imports rclpy and the message packages only (not torch), ignores SIGINT (the node
handles Ctrl-C) and ends when its stdin closes: when the node stops it or the node's process
ends, whichever way.

Run as ``python -m vssm_ros.ros.input_relay SPEC`` by ``InputRelay`` (SPEC: JSON, see
``InputRelay.spec``).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message

HEADER = struct.Struct('<BI')
"""Per message on the pipe: the input's index and the CDR payload's length in bytes."""
STOP_WAIT_S = 2.0
"""How long ``InputRelay.stop`` waits for the child to end before killing it."""

Log = Callable[[str, str], None]


def msg_class(type_name: str) -> Any:
    """The rclpy class of a ROS type name ('nav_msgs/msg/Odometry')."""
    pkg, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


def sensor_qos(reliability: str, depth: int) -> QoSProfile:
    """The sensor inputs' QoS: ``reliability`` ('best_effort' or 'reliable'), KEEP_LAST
    ``depth``, volatile."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=(ReliabilityPolicy.BEST_EFFORT if reliability == 'best_effort'
                                   else ReliabilityPolicy.RELIABLE),
                      durability=DurabilityPolicy.VOLATILE)


class RelayInput(NamedTuple):
    """One input the child subscribes to."""

    topic: str
    """Fully resolved topic name."""
    type_name: str
    """ROS type ('sensor_msgs/msg/Imu')."""
    depth: int
    """The subscription's queue depth (KEEP_LAST)."""
    deliver: Callable[[Any], None]
    """Called with each message (deserialised) on the reading thread."""


class InputRelay:
    """The parent side: starts the child, reads its pipe and delivers the messages.

    Args:
        inputs: what the child subscribes to.
        reliability: 'best_effort' or 'reliable' (``sensor_qos``).
        node_name, namespace: the child's node.
        log: called with (level, text).
        on_end: called (on the reading thread) when the child ends without being stopped,
            after the error is logged: the node then subscribes to the inputs itself.
    """

    def __init__(self, inputs: Sequence[RelayInput], reliability: str, node_name: str,
                 namespace: str, log: Log, on_end: Optional[Callable[[], None]] = None
                 ) -> None:
        self.on_end = on_end
        self.inputs = list(inputs)
        self.reliability = reliability
        self.node_name, self.namespace = node_name, namespace
        self.log = log
        self._proc: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None
        self._stopping = False

    @property
    def spec(self) -> Dict[str, Any]:
        """What the child is told (JSON)."""
        return {'node': self.node_name, 'namespace': self.namespace,
                'reliability': self.reliability,
                'inputs': [[i.topic, i.type_name, i.depth] for i in self.inputs]}

    def start(self) -> 'InputRelay':
        """Start the child and the reading thread."""
        self._classes = [msg_class(i.type_name) for i in self.inputs]
        # The child imports this package as the node did (a source checkout, colcon's paths).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._proc = subprocess.Popen(
            [sys.executable, '-m', 'vssm_ros.ros.input_relay', json.dumps(self.spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._thread = threading.Thread(target=self._read, name='vssm-input-relay',
                                        daemon=True)
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def state(self) -> str:
        """For the diagnostics: 'running', 'stopped', or how it ended."""
        if self.alive():
            return 'running'
        if self._stopping or self._proc is None:
            return 'stopped'
        then = 'the node subscribes itself' if self.on_end is not None else 'no input'
        return f'ended with code {self._proc.returncode}: {then}'

    def _read(self) -> None:
        pipe = self._proc.stdout
        while True:
            head = _read_exact(pipe, HEADER.size)
            if head is None:
                break
            index, size = HEADER.unpack(head)
            payload = _read_exact(pipe, size)
            if payload is None:
                break
            try:
                msg = deserialize_message(payload, self._classes[index])
            except Exception as err:   # not from rmw; still never the end of the intake
                self.log('error', f'{self.inputs[index].topic}: a message could not be '
                         f'deserialised ({type(err).__name__}: {err}); dropped')
                continue
            self.inputs[index].deliver(msg)
        if self._stopping:
            return
        code = self._proc.wait()
        then = ('the node subscribes to them itself' if self.on_end is not None
                else 'no more camera or IMU messages; restart the node')
        self.log('error', f'the input process ({self.node_name}) ended with code {code}: {then}')
        if self.on_end is not None:
            self.on_end()

    def stop(self) -> None:
        """End the child (closing its stdin) and the reading thread."""
        self._stopping = True
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)


def _read_exact(pipe: Any, size: int) -> Optional[bytes]:
    """``size`` bytes from ``pipe``, None at its end."""
    data = pipe.read(size)
    if data is None or len(data) < size:
        return None
    return data


def main(argv: Optional[List[str]] = None) -> int:
    """The child: subscribe to the inputs of the SPEC (``argv[1]``), forward each message to
    stdout until stdin closes."""
    args = sys.argv if argv is None else argv
    spec = json.loads(args[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the node handles Ctrl-C and stops us
    out = os.fdopen(os.dup(sys.stdout.fileno()), 'wb', buffering=0)
    sys.stdout = sys.stderr   # nothing else may write into the pipe
    rclpy.init(args=[])
    node = rclpy.create_node(spec['node'], namespace=spec['namespace'])
    ending = threading.Event()

    def end() -> None:
        ending.set()
        rclpy.try_shutdown()

    def forward(index: int, data: bytes) -> None:
        try:
            out.write(HEADER.pack(index, len(data)) + data)
        except OSError:   # the node is gone
            end()

    for index, (topic, type_name, depth) in enumerate(spec['inputs']):
        node.create_subscription(msg_class(type_name), topic,
                                 lambda data, i=index: forward(i, data),
                                 sensor_qos(spec['reliability'], depth), raw=True)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()   # returns at EOF: the node closed it or ended
        end()

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (ExternalShutdownException, KeyboardInterrupt):
        pass
    except Exception:
        if not ending.is_set():   # rclpy refuses to go on once shut down: that is the end
            raise
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
