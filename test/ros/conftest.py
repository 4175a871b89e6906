# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the tests with real rclpy: the ROS 2 test environment (.venv-ros, made by
tools/make_ros_test_env.sh from `make test`) and ROS processes that are always cleaned up.

The tests run in the main environment and start ROS processes with the ROS venv's Python, each
test on its own ROS_DOMAIN_ID, discovery limited to this machine.
"""

import itertools
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
ROS_VENV = Path(os.environ.get('VSSM_ROS_VENV', REPO / '.venv-ros'))
_domains = itertools.count()


@pytest.fixture(scope='session')
def ros_venv() -> Path:
    """The ROS 2 test environment; skips (with the reason recorded by the installer) when it
    could not be made."""
    if not (ROS_VENV / '.installed').is_file():
        why = ROS_VENV / 'UNAVAILABLE'
        reason = (why.read_text(encoding='utf-8').strip() if why.is_file() else
                  'not installed (make test creates it: tools/make_ros_test_env.sh)')
        pytest.skip(f'ROS 2 test environment {ROS_VENV}: {reason}')
    return ROS_VENV


def make_ros_env(log_dir: Path) -> dict:
    """Environment for ROS processes: a ROS_DOMAIN_ID not used before in this session
    (1..100, from the pid), loopback discovery only, logs in ``log_dir``."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(1 + (os.getpid() + next(_domains)) % 100),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', ROS_LOG_DIR=str(log_dir),
               RCUTILS_COLORIZED_OUTPUT='0', PYTHONUNBUFFERED='1')
    env.pop('_ROS_WHEELS_BOOTSTRAP_COMPLETE', None)
    return env


@pytest.fixture
def ros_env(tmp_path) -> dict:
    """``make_ros_env`` for one test."""
    return make_ros_env(tmp_path / 'ros_log')


class RosProcess:
    """A subprocess whose output goes to a log file; on exit it is interrupted (SIGINT, as
    Ctrl-C), then killed with its process group if it does not stop."""

    def __init__(self, args, env, log: Path) -> None:
        self.args = [str(a) for a in args]
        self.log = log
        self._fh = open(log, 'wb')
        self.proc = subprocess.Popen(self.args, env=env, stdout=self._fh,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=REPO)

    def __enter__(self) -> 'RosProcess':
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait(self, timeout: float) -> int:
        """Exit code; kills it and fails the test after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f'{self.args[0]} did not finish in {timeout} s\n{self.tail()}')

    def interrupt(self, timeout: float = 20.0) -> int:
        """SIGINT, then the exit code (killed after ``timeout``: returns -9)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # The node's stacks into its log (faulthandler on SIGUSR1), for the failure.
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            self.stop()
            return -9

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()

    def tail(self, n: int = 60) -> str:
        if not self._fh.closed:
            self._fh.flush()
        lines = self.log.read_text(encoding='utf-8', errors='replace').splitlines()
        return f'--- last {n} lines of {self.log} ---\n' + '\n'.join(lines[-n:])


@pytest.fixture(scope='session')
def ros_tools():
    """``make_ros_env`` and ``RosProcess`` for module-scoped fixtures."""
    return SimpleNamespace(env=make_ros_env, Process=RosProcess)


@pytest.fixture
def ros_pytest(ros_venv, ros_env):
    """Run a test module of test/ros in the ROS venv (real rclpy) and assert that it passed."""
    def run(name: str) -> None:
        res = subprocess.run(
            [str(ros_venv / 'bin' / 'python'), '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
             str(REPO / 'test' / 'ros' / name)],
            env=ros_env, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
        assert ' passed' in res.stdout and 'failed' not in res.stdout, res.stdout
    return run


@pytest.fixture(scope='module')
def flight():
    """A 1 s synthetic flight of 48x36 frames (the LiveSlam tests, live_harness.py)."""
    from vssm_ros.config import SyntheticConfig
    from vssm_ros.data.synthetic import generate_flight
    return generate_flight(SyntheticConfig(duration_s=1.0, hover_s=0.2, ramp_s=0.5, width=48,
                                           height=36))


@pytest.fixture(scope='module')
def messages(flight):
    """The flight's messages (rosbags classes) as the node receives them, in order."""
    from live_harness import TYPES
    from vssm_ros.data.bags import stream_messages
    from vssm_ros.data.synthetic import realsense_layout
    return list(stream_messages(flight.items(), realsense_layout(flight), TYPES))
