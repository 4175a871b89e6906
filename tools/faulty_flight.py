# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A synthetic flight with realistic input faults, replayed beside its clean copy (issue 17).

Writes a synthetic flight (mcap) and a faulty copy of it, the same bag rewritten with seven
fault classes, each on about ``--rate`` (2 %) of the messages it concerns:

- ``rgb_encoding``: a colour image in an encoding we do not support (yuv422);
- ``depth_short``: a depth image whose data is shorter than its header says;
- ``camera_info_zero_k``: a camera_info with an all-zero K (an uncalibrated camera);
- ``frame_past``: a frame (colour, depth, camera infos) stamped 0.5 s in the past;
- ``frame_duplicate``: a frame whose messages arrive twice;
- ``imu_nan``: NaN in an IMU sample;
- ``imu_gap``: 0.4 s without IMU samples (one gap).

Then it runs ``vssm-replay`` (its ``main``, so the exit status is the real one) on both and
prints a table: frames good / processed, each fault class injected against what the replay
counted, ATE clean against faulty and their ratio (the bar: <= 1.2), exit statuses; and
a truncated copy of the faulty bag (cut at 97 % of its bytes, without metadata.yaml): the
messages recovered against those of the intact bag written before the cut, and its replay.
A frame is good when none of its messages carries a fault (past-stamped and duplicated frames
are faulty); every good frame must be processed::

    OMP_NUM_THREADS=1 .venv/bin/python tools/faulty_flight.py    # 15 s, config/demo.yaml
    .venv/bin/python tools/faulty_flight.py --duration 30 --rate 0.05 --out out/ff30

``run_faulty_flight`` is the same on any SyntheticConfig and config files (the tests use a 3 s
flight of 64x48 images).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from vssm_ros.cli import replay
from vssm_ros.cli.paths import config_path
from vssm_ros.config import SyntheticConfig
from vssm_ros.data import messages as M
from vssm_ros.data.bag_recovery import recover_bag
from vssm_ros.data.bags import BagReader, BagWriter, bag_msg_types
from vssm_ros.data.synthetic import generate_flight, write_flight
from vssm_ros.data.synthetic.writer import realsense_layout

FAULT_CLASSES = ('rgb_encoding', 'depth_short', 'camera_info_zero_k', 'frame_past',
                 'frame_duplicate', 'imu_nan', 'imu_gap')
"""The injected fault classes, in table order."""
FRAME_FAULTS = FAULT_CLASSES[:5]
"""Fault classes that make a frame faulty."""
_CAMERA_ROLES = ('rgb', 'depth', 'camera_info')
COUNTED_AS = {
    'rgb_encoding': ('rgb_encoding',),
    'depth_short': ('depth_data_size',),
    'camera_info_zero_k': ('camera_info_k',),
    'frame_past': tuple(f'{r}_time_backwards' for r in _CAMERA_ROLES),
    'frame_duplicate': tuple(f'{r}_stamp_repeated' for r in _CAMERA_ROLES),
    'imu_nan': ('imu_non_finite',),
    'imu_gap': ('imu_gap',),
}
"""The bad-input reasons (metrics.json ``frames.bad_input``) each fault class must show up
as, each once per injected fault (a past or duplicated frame: once per camera topic)."""
PAST_S = 0.5
"""How far in the past a ``frame_past`` frame is stamped."""
GAP_S = 0.4
"""Length of the IMU gap."""
SKIP_FIRST = 3
"""Frames at the start that stay clean (the map is started from them)."""
ATE_RATIO_BAR = 1.2
TRUNCATE_AT = 0.97
"""Where the truncated copy is cut (fraction of the mcap's bytes)."""
"""The faulty flight's ATE may be at most this many times the clean flight's."""

DEMO_FLIGHT = SyntheticConfig(duration_s=15.0)
"""The demo's flight (SyntheticConfig defaults: the room, 160x120 at 20 Hz, IMU at 200 Hz),
15 s long."""


@dataclasses.dataclass
class FaultPlan:
    """Which messages get which fault (chosen up front from a seeded RNG).

    Attributes:
        frames: fault class -> stamps (ns) of the frames it hits (the frame classes).
        imu_nan: stamps (ns) of the IMU samples that get a NaN.
        gap: (start, end) stamps (ns): IMU samples stamped in [start, end) are left out.
    """

    frames: Dict[str, List[int]]
    imu_nan: List[int]
    gap: Tuple[int, int]

    @property
    def faulty_frames(self) -> Set[int]:
        return {s for stamps in self.frames.values() for s in stamps}

    def injected(self) -> Dict[str, int]:
        """Faults injected per class (the gap: one)."""
        out = {k: len(v) for k, v in self.frames.items()}
        out['imu_nan'] = len(self.imu_nan)
        out['imu_gap'] = int(self.gap[1] > self.gap[0])
        return out


def plan_faults(frame_stamps: Sequence[int], imu_stamps: Sequence[int], rate: float,
                seed: int, classes: Sequence[str] = FAULT_CLASSES) -> FaultPlan:
    """Pick the faulty messages: ``rate`` of the frames per frame class (at least one, each
    frame at most one fault, none of the first ``SKIP_FIRST``), ``rate`` of the IMU samples
    outside the gap, and one gap of ``GAP_S`` in the middle half of the flight."""
    rng = np.random.default_rng(seed)
    frame_stamps = [int(s) for s in frame_stamps]
    imu_stamps = np.asarray(imu_stamps, dtype=np.int64)
    per_class = max(1, int(round(rate * len(frame_stamps))))
    candidates = frame_stamps[SKIP_FIRST:]
    if len(candidates) < per_class * len(FRAME_FAULTS):
        raise ValueError(f'{len(frame_stamps)} frames are too few for {per_class} faulty '
                         f'frames of each of {len(FRAME_FAULTS)} classes')
    picked = rng.choice(len(candidates), per_class * len(FRAME_FAULTS), replace=False)
    frames = {c: sorted(candidates[i] for i in picked[k * per_class:(k + 1) * per_class])
              for k, c in enumerate(FRAME_FAULTS)}
    t0, t1 = int(imu_stamps[0]), int(imu_stamps[-1])
    start = int(t0 + (t1 - t0) * rng.uniform(0.25, 0.75 - GAP_S * 1e9 / (t1 - t0)))
    gap = (start, start + int(GAP_S * 1e9))
    outside = imu_stamps[(imu_stamps < gap[0] - 10**8) | (imu_stamps >= gap[1] + 10**8)]
    n_nan = max(1, int(round(rate * len(imu_stamps))))
    imu_nan = sorted(int(s) for s in rng.choice(outside, n_nan, replace=False))
    plan = FaultPlan(frames, imu_nan, gap)
    return _only(plan, classes)


def _only(plan: FaultPlan, classes: Sequence[str]) -> FaultPlan:
    """The plan without the faults of classes not in ``classes`` (to look at one alone)."""
    unknown = set(classes) - set(FAULT_CLASSES)
    if unknown:
        raise ValueError(f'unknown fault classes {sorted(unknown)}; known: {FAULT_CLASSES}')
    return FaultPlan({c: v if c in classes else [] for c, v in plan.frames.items()},
                     plan.imu_nan if 'imu_nan' in classes else [],
                     plan.gap if 'imu_gap' in classes else (0, 0))


def _fault_of(plan: FaultPlan) -> Dict[int, str]:
    return {s: c for c, stamps in plan.frames.items() for s in stamps}


def faulty_messages(messages: Any, plan: FaultPlan, layout: Any,
                    types: M.MsgTypes) -> Any:
    """The (topic, log time ns, message) of a clean flight with the plan's faults: messages
    are changed in place, duplicated or left out. Header stamps are what the faults change;
    log times stay (the recorder's clock)."""
    fault = _fault_of(plan)
    nan = set(plan.imu_nan)
    camera = {layout.rgb_topic, layout.depth_topic, layout.rgb_info_topic,
              layout.depth_info_topic}
    for topic, log_ns, msg in messages:
        stamp = M.header_stamp_ns(msg) if hasattr(msg, 'header') else None
        if topic == layout.imu_topic:
            if plan.gap[0] <= stamp < plan.gap[1]:
                continue
            if stamp in nan:
                msg.linear_acceleration.y = float('nan')
        kind = fault.get(stamp) if topic in camera else None
        if kind == 'rgb_encoding' and topic == layout.rgb_topic:
            msg.encoding = 'yuv422'
        elif kind == 'depth_short' and topic == layout.depth_topic:
            msg.data = msg.data[:len(msg.data) // 2].copy()
        elif kind == 'camera_info_zero_k' and topic == layout.rgb_info_topic:
            msg.k = np.zeros(9)
        elif kind == 'frame_past':
            msg.header.stamp = M.ns_to_stamp(types, stamp - int(PAST_S * 1e9))
        yield topic, log_ns, msg
        if kind == 'frame_duplicate':
            yield topic, log_ns, msg


def write_flights(cfg: SyntheticConfig, out: Path, rate: float = 0.02, seed: int = 0,
                  classes: Sequence[str] = FAULT_CLASSES) -> Tuple[Path, Path, FaultPlan, Any]:
    """Write the clean flight (``out/clean``, write_flight: mcap and truth) and its faulty copy
    (``out/faulty/rosbag2_mcap``); returns (clean bag, faulty bag, the plan, the flight)."""
    flight = generate_flight(cfg)
    clean = write_flight(flight, out / 'clean', ('mcap',), overwrite=True)['mcap']
    imu_stamps = flight.imu.stamps_ns
    plan = plan_faults(flight.frame_stamps_ns, imu_stamps, rate, seed, classes)
    faulty = out / 'faulty' / 'rosbag2_mcap'
    write_faulty_bag(clean, faulty, plan, realsense_layout(flight))
    return clean, faulty, plan, flight


def write_faulty_bag(clean: Path, faulty: Path, plan: FaultPlan, layout: Any) -> None:
    """Rewrite the bag ``clean`` as ``faulty`` (mcap, replaced) with the plan's faults."""
    with BagReader(clean) as bag, BagWriter(faulty, 'mcap', overwrite=True) as writer:
        msgtypes = {t: info.msgtype for t, info in bag.topics.items()}
        for topic, log_ns, msg in faulty_messages(bag.messages(list(msgtypes)), plan, layout,
                                                  bag_msg_types('mcap')):
            writer.write(topic, msgtypes[topic], log_ns, msg)


def replay_bag(bag: Path, configs: Sequence[Path], out: Path) -> Tuple[int, Dict[str, Any],
                                                                       Set[int]]:
    """``vssm-replay BAG --config ... --out OUT --quiet --no-plots``: (exit status, its
    metrics.json or {} when it wrote none, the stamps (ns) of the processed frames)."""
    args = [str(bag), '--out', str(out), '--quiet', '--no-plots']
    for c in configs:
        args += ['--config', str(c)]
    metrics_path = out / 'metrics.json'
    metrics_path.unlink(missing_ok=True)
    rc = replay.main(args)
    if not metrics_path.exists():
        return rc, {}, set()
    metrics = json.loads(metrics_path.read_text(encoding='utf-8'))
    stamps = set()
    for line in (out / 'trajectory.tum').read_text(encoding='utf-8').splitlines():
        if line and not line.startswith('#'):
            sec, _, frac = line.split()[0].partition('.')
            stamps.add(int(sec) * 10**9 + int(frac.ljust(9, '0')[:9]))
    return rc, metrics, stamps


def run_faulty_flight(cfg: SyntheticConfig, out: Path, configs: Sequence[Path] = (),
                      rate: float = 0.02, seed: int = 0,
                      classes: Sequence[str] = FAULT_CLASSES) -> Dict[str, Any]:
    """Write the two flights, replay both and compare (see the module docstring).

    Returns:
        'frames' (total, good, processed, good_processed, faulty_processed), 'faults' (class ->
        injected, counted: reason -> count), 'bad_input' (the faulty replay's counts by reason),
        'bad_input_examples', 'ate_clean', 'ate_faulty', 'ate_ratio', 'rc_clean', 'rc_faulty',
        'plan'.
    """
    out = Path(out)
    configs = list(configs) or [config_path('demo.yaml')]
    clean, faulty, plan, flight = write_flights(cfg, out, rate, seed, classes)
    rc_clean, m_clean, _ = replay_bag(clean, configs, out / 'replay_clean')
    rc_faulty, m_faulty, processed = replay_bag(faulty, configs, out / 'replay_faulty')
    frames = {int(s) for s in flight.frame_stamps_ns}
    good = frames - plan.faulty_frames
    bad_input = (m_faulty.get('frames') or {}).get('bad_input') or {}
    injected = plan.injected()
    faults = {c: {'injected': injected[c],
                  'counted': {r: int(bad_input.get(r, 0)) for r in COUNTED_AS[c]}}
              for c in FAULT_CLASSES}
    ate_clean = (m_clean.get('ate') or {}).get('rmse')
    ate_faulty = (m_faulty.get('ate') or {}).get('rmse')
    result = {
        'frames': {'total': len(frames), 'good': len(good), 'processed': len(processed),
                   'good_processed': len(good & processed),
                   'faulty_processed': len(plan.faulty_frames & processed)},
        'faults': faults, 'bad_input': bad_input,
        'bad_input_examples': (m_faulty.get('frames') or {}).get('bad_input_examples') or {},
        'ate_clean': ate_clean, 'ate_faulty': ate_faulty,
        'ate_ratio': (ate_faulty / ate_clean if ate_clean and ate_faulty is not None
                      else None),
        'rc_clean': rc_clean, 'rc_faulty': rc_faulty,
        'plan': dataclasses.asdict(plan),
    }
    result['truncated'] = truncated_copy(faulty, out, configs)
    (out / 'faulty_flight.json').write_text(json.dumps(result, indent=2) + '\n',
                                            encoding='utf-8')
    return result


def truncated_copy(bag: Path, out: Path, configs: Sequence[Path],
                   frac: float = TRUNCATE_AT) -> Dict[str, Any]:
    """Cut the bag's mcap at ``frac`` of its bytes, without metadata.yaml (a recorder killed
    by a power loss), read it back by recovery and replay it. Every message written wholly
    before the cut must come back, byte for byte and in order.

    Returns:
        'cut_fraction', 'messages_intact', 'messages_before_cut', 'messages_recovered',
        'recovered_is_the_prefix', 'rc' (the replay's exit status), 'frames_processed'.
    """
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        intact = [(c.topic, t, bytes(r)) for c, t, r in reader.messages()]
    store = next(bag.glob('*.mcap'))
    raw = store.read_bytes()
    cut = int(len(raw) * frac)
    dest = out / 'truncated' / bag.name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest / store.name).write_bytes(raw[:cut])
    before = _written_before(raw, intact, cut)
    recovered = [(c.topic, t, bytes(r)) for c, t, r in recover_bag(dest, 'cut').messages()]
    rc, metrics, processed = replay_bag(dest, configs, out / 'replay_truncated')
    return {'cut_fraction': frac, 'messages_intact': len(intact), 'messages_before_cut': before,
            'messages_recovered': len(recovered),
            'recovered_is_the_prefix': recovered == intact[:before], 'rc': rc,
            'frames_processed': len(processed)}


def _written_before(file_bytes: bytes, msgs: List[Tuple[str, int, bytes]], cut: int) -> int:
    """How many of ``msgs`` (in file order) lie wholly in ``file_bytes[:cut]`` (the writer's
    chunks are uncompressed: each message's bytes are in the file verbatim)."""
    pos = n = 0
    for _, _, data in msgs:
        at = file_bytes.find(data, pos)
        if at < 0 or at + len(data) > cut:
            break
        n, pos = n + 1, at + len(data)
    return n


def table(r: Dict[str, Any]) -> str:
    """The result as a plain-text table."""
    f = r['frames']
    lines = [f'frames: {f["total"]} in the flight, {f["good"]} good, {f["processed"]} '
             f'processed ({f["good_processed"]} of the good, {f["faulty_processed"]} of the '
             'faulty)', '',
             f'{"fault class":<20} {"injected":>8}  counted (bad-input reason: count)',
             '-' * 78]
    for c, v in r['faults'].items():
        lines.append(f'{c:<20} {v["injected"]:>8}  ' + ', '.join(
            f'{k}: {n}' for k, n in v['counted'].items()))
    lines.append('')
    lines.append('bad input by reason (faulty replay): ' + ', '.join(
        f'{k} {v}' for k, v in sorted(r['bad_input'].items())))
    ratio = r['ate_ratio']
    ate = (f'ATE clean {_cm(r["ate_clean"])}, faulty {_cm(r["ate_faulty"])}, ratio '
           f'{ratio:.3f}' if ratio is not None else
           f'ATE clean {_cm(r["ate_clean"])}, faulty {_cm(r["ate_faulty"])}')
    lines.append(f'{ate} (bar <= {ATE_RATIO_BAR})')
    lines.append(f'exit status: clean {r["rc_clean"]}, faulty {r["rc_faulty"]}')
    t = r['truncated']
    lines.append(f'truncated copy (cut at {100 * t["cut_fraction"]:g} % of its bytes, no '
                 f'metadata.yaml): {t["messages_recovered"]} messages recovered of the '
                 f'{t["messages_before_cut"]} written before the cut ({t["messages_intact"]} in '
                 f'the intact bag), '
                 f'{"the same" if t["recovered_is_the_prefix"] else "NOT the same"} bytes; '
                 f'replay exit {t["rc"]}, {t["frames_processed"]} frames processed')
    return '\n'.join(lines)


def _cm(x: Optional[float]) -> str:
    return 'n/a' if x is None else f'{100 * x:.3f} cm'


def passed(r: Dict[str, Any]) -> bool:
    """Whether the faulty flight meets the issue's bar."""
    f = r['frames']
    return (r['rc_faulty'] == 0 and r['rc_clean'] == 0 and f['good_processed'] == f['good']
            and all(n == v['injected'] for v in r['faults'].values()
                    for n in v['counted'].values())
            and r['ate_ratio'] is not None and r['ate_ratio'] <= ATE_RATIO_BAR
            and r['truncated']['recovered_is_the_prefix'] and r['truncated']['rc'] == 0)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default='out/faulty_flight', metavar='DIR')
    p.add_argument('--duration', type=float, default=DEMO_FLIGHT.duration_s, metavar='S')
    p.add_argument('--rate', type=float, default=0.02,
                   help='fraction of the messages of each class that get a fault')
    p.add_argument('--seed', type=int, default=0, help='seed of the fault choice')
    p.add_argument('--flight-seed', type=int, default=0, help='seed of the synthetic flight')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='replay config files (default: config/demo.yaml)')
    args = p.parse_args(argv)
    cfg = dataclasses.replace(DEMO_FLIGHT, duration_s=args.duration, seed=args.flight_seed)
    r = run_faulty_flight(cfg, Path(args.out), [Path(c) for c in args.config], args.rate,
                          args.seed)
    print(table(r))
    ok = passed(r)
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
