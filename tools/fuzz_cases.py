# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The adversarial messages of the fuzz campaign (tools/fuzz.py), one generator per class.

Every case is a short list of (input role, message) with real message objects (rosbags'
classes, built by the package's own builders and then damaged): 'rgb', 'depth' and
'camera_info' go to the node's ``Intake.on_camera``, 'imu' to ``Intake.on_imu``. Cases are
drawn from a seeded RNG, stamped on a clock that moves forward like a live camera's (``Clock``),
so that the damaged messages meet an intake and an engine in a running state.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from vssm_ros.data import messages as M

CAMERA_FRAME = 'camera_color_optical_frame'
IMU_FRAME = 'camera_imu_frame'
FRAME_PERIOD_NS = 50_000_000
IMU_PERIOD_NS = 5_000_000
BAD_ENCODINGS = ('yuv422', 'bayer_rggb8', '8UC3', '16SC1', '64FC1', '', 'RGB8', 'rgb8 ',
                 '\x00', 'ü' * 40, '32FC1\n')
SIZES = (0, 1, 2, 3, 7, 65536, 2**31 - 1, 2**32 - 1, -1, -2**31, 10**6)
STEPS = ('zero', 'short', 'pad', 'odd', 'huge', 'negative')
DEPTH_VALUES = ('nan', 'inf', '-inf', 'negative', 'huge', 'max_float', 'denormal', 'all_nan',
                'all_zero', 'u16_max', 'u16_one', 'noise')
K_CASES = ('zero', 'nan', 'inf', 'neg_fx', 'huge_fx', 'tiny_fx', 'far_cx', 'skew', 'len8',
           'len12', 'size0', 'size_mismatch', 'bad_d')
STAMP_CASES = ('duplicate', 'past_small', 'past_large', 'future', 'future_int32',
               'future_uint32', 'zero', 'nanosec_overflow', 'negative', 'sec_2e40',
               'unpaired')
FIELD_CASES = ('data_none', 'height_str', 'encoding_none', 'k_str', 'stamp_none',
               'width_float', 'acc_none', 'no_header', 'data_list_big', 'step_nan')
Case = List[Tuple[str, Any]]


class Clock:
    """The fuzz's stamps: camera frames every ``FRAME_PERIOD_NS``, IMU samples every
    ``IMU_PERIOD_NS``, from ``start_ns``."""

    def __init__(self, start_ns: int) -> None:
        self.frame_ns = int(start_ns)
        self.imu_ns = int(start_ns)

    def next_frame(self) -> int:
        self.frame_ns += FRAME_PERIOD_NS
        return self.frame_ns

    def next_imu(self, period_ns: int = IMU_PERIOD_NS) -> int:
        self.imu_ns = max(self.imu_ns + period_ns, self.frame_ns - FRAME_PERIOD_NS)
        return self.imu_ns


class Cases:
    """Builds the cases of each class (see the module docstring).

    Args:
        types: the message classes (rosbags').
        frames: valid (rgb (H, W, 3) uint8, depth (H, W) metres, K (3, 3)) to damage.
        rng: the campaign's RNG.
        clock: the stamps.
    """

    def __init__(self, types: M.MsgTypes, frames: List[Tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]],
                 rng: np.random.Generator, clock: Clock) -> None:
        self.types, self.frames, self.rng, self.clock = types, frames, rng, clock
        self.classes: Dict[str, Callable[[], Case]] = {
            'clean': self.clean, 'encoding': self.encoding, 'size': self.size,
            'step': self.step, 'endianness': self.endianness, 'depth_values': self.depth_values,
            'intrinsics': self.intrinsics, 'stamps': self.stamps, 'imu_burst': self.imu_burst,
            'imu_gap': self.imu_gap, 'imu_nan': self.imu_nan, 'empty': self.empty,
            'huge': self.huge, 'fields': self.fields}

    # ------------------------------------------------------------------ valid material

    def pick(self, options: Any) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def triple(self, stamp: int = 0, depth_enc: str = '16UC1') -> Dict[str, Any]:
        """A valid colour image, depth image and camera_info of one of the flight's frames."""
        rgb, depth, K = self.frames[int(self.rng.integers(len(self.frames)))]
        s = stamp or self.clock.next_frame()
        h, w = depth.shape
        raw = (np.where(np.isfinite(depth), np.rint(depth * 1000), 0).astype(np.uint16)
               if depth_enc == '16UC1' else depth.astype(np.float32))
        return {'rgb': M.image_msg(self.types, rgb, 'rgb8', s, CAMERA_FRAME),
                'depth': M.image_msg(self.types, raw, depth_enc, s, CAMERA_FRAME),
                'camera_info': M.camera_info_msg(self.types, K, w, h, s, CAMERA_FRAME)}

    def imu(self, stamp: int, acc: Any = (0.0, 0.0, 9.81), gyro: Any = (0.0, 0.0, 0.0)) -> Any:
        return M.imu_msg(self.types, stamp, IMU_FRAME, np.asarray(acc, float),
                         np.asarray(gyro, float))

    def imu_until_frame(self) -> Case:
        """Valid IMU samples up to the next frame (a camera with its IMU)."""
        out = []
        while self.clock.imu_ns + IMU_PERIOD_NS <= self.clock.frame_ns + FRAME_PERIOD_NS:
            out.append(('imu', self.imu(self.clock.next_imu(),
                                        self.rng.normal([0, 0, 9.81], 0.05),
                                        self.rng.normal(0, 0.01, 3))))
        return out

    @staticmethod
    def as_case(t: Dict[str, Any]) -> Case:
        return [(r, t[r]) for r in ('rgb', 'depth', 'camera_info')]

    # ------------------------------------------------------------------ the classes

    def clean(self) -> Case:
        return self.imu_until_frame() + self.as_case(self.triple())

    def encoding(self) -> Case:
        t = self.triple()
        role = self.pick(('rgb', 'depth'))
        enc = self.pick(tuple(M.IMAGE_ENCODINGS) + BAD_ENCODINGS)
        msg = t[role]
        if enc in M.IMAGE_ENCODINGS and self.rng.random() < 0.5:
            # Consistent data for the claimed encoding: the conversion accepts the image.
            dtype, ch = M.IMAGE_ENCODINGS[enc]
            shape = (msg.height, msg.width) + ((ch,) if ch > 1 else ())
            px = self.rng.integers(0, 255, shape).astype(dtype)
            t[role] = msg = M.image_msg(self.types, px, enc, M.header_stamp_ns(msg),
                                        CAMERA_FRAME)
        msg.encoding = enc
        return self.as_case(t)

    def size(self) -> Case:
        t = self.triple()
        msg = t[self.pick(('rgb', 'depth', 'camera_info'))]
        msg.width, msg.height = self.pick(SIZES), self.pick(SIZES)
        if hasattr(msg, 'step'):
            msg.step = max(msg.width, 0) * 3
            if self.rng.random() < 0.3 and 0 < msg.step * msg.height < 10**6:
                msg.data = np.zeros(msg.step * msg.height, np.uint8)
        return self.as_case(t)

    def step(self) -> Case:
        t = self.triple()
        msg = t[self.pick(('rgb', 'depth'))]
        row, h = msg.step, msg.height
        kind = self.pick(STEPS)
        if kind == 'pad':   # valid: rows padded to a larger step
            pad = int(self.rng.integers(1, 64))
            data = np.zeros((h, row + pad), np.uint8)
            data[:, :row] = msg.data.reshape(h, row)
            msg.step, msg.data = row + pad, data.reshape(-1)
        else:
            msg.step = {'zero': 0, 'short': row - 1, 'odd': row + 3, 'huge': 2**31,
                        'negative': -row}[kind]
        return self.as_case(t)

    def endianness(self) -> Case:
        t = self.triple(depth_enc=self.pick(('16UC1', '32FC1')))
        msg = t['depth']
        flag = self.pick((0, 1, 2, 255, True, -1))
        if flag == 1 or flag is True:   # valid: big-endian pixels, flagged as such
            dtype = M.IMAGE_ENCODINGS[msg.encoding][0]
            px = np.frombuffer(msg.data.tobytes(), dtype=dtype.newbyteorder('<'))
            msg.data = np.frombuffer(px.astype(dtype.newbyteorder('>')).tobytes(), np.uint8)
        msg.is_bigendian = flag
        return self.as_case(t)

    def depth_values(self) -> Case:
        kind = self.pick(DEPTH_VALUES)
        u16 = kind in ('u16_max', 'u16_one', 'noise')
        t = self.triple(depth_enc='16UC1' if u16 else '32FC1')
        msg = t['depth']
        h, w = msg.height, msg.width
        if u16:
            px = {'u16_max': np.full((h, w), 65535), 'u16_one': np.ones((h, w)),
                  'noise': self.rng.integers(0, 65536, (h, w))}[kind].astype(np.uint16)
        else:
            px = np.frombuffer(msg.data.tobytes(), np.float32).reshape(h, w).copy()
            mask = self.rng.random((h, w)) < 0.3
            value = {'nan': np.nan, 'inf': np.inf, '-inf': -np.inf, 'negative': -2.0,
                     'huge': 1e30, 'max_float': np.finfo(np.float32).max,
                     'denormal': 1e-42, 'all_nan': np.nan, 'all_zero': 0.0}[kind]
            px[np.ones_like(mask) if kind.startswith('all') else mask] = value
        t['depth'] = M.image_msg(self.types, px, msg.encoding, M.header_stamp_ns(msg),
                                 CAMERA_FRAME)
        return self.as_case(t)

    def intrinsics(self) -> Case:
        t = self.triple()
        info = t['camera_info']
        K = np.asarray(info.k, float).reshape(3, 3).copy()
        kind = self.pick(K_CASES)
        if kind in ('len8', 'len12'):
            info.k = np.zeros(8 if kind == 'len8' else 12)
        elif kind == 'size0':
            info.width = info.height = 0
        elif kind == 'size_mismatch':
            info.width, info.height = info.width * 2, info.height + 1
        elif kind == 'bad_d':
            info.d, info.distortion_model = np.full(100, np.nan), 'ü' * 20
        else:
            fx = {'zero': 0.0, 'nan': np.nan, 'inf': np.inf, 'neg_fx': -K[0, 0],
                  'huge_fx': 1e30, 'tiny_fx': 1e-30}.get(kind, K[0, 0])
            K = np.zeros((3, 3)) if kind == 'zero' else K
            K[0, 0] = fx
            if kind == 'far_cx':
                K[0, 2] = 1e9
            if kind == 'skew':
                K[0, 1] = 1e6
            info.k = K.reshape(-1)
        return self.as_case(t)

    def stamps(self) -> Case:
        kind = self.pick(STAMP_CASES)
        now = self.clock.frame_ns
        if kind == 'unpaired':   # colour and depth stamped apart by more than the slop
            t, other = self.triple(), self.triple(stamp=self.clock.next_frame() + 31_000_000)
            return [('rgb', t['rgb']), ('depth', other['depth']),
                    ('camera_info', t['camera_info'])]
        stamp = {'duplicate': now, 'past_small': now - int(self.rng.integers(1, 900)) * 10**6,
                 'past_large': now - int(self.rng.integers(2, 100)) * 10**9,
                 'future': now + 75 * 365 * 86400 * 10**9,
                 'future_int32': (2**31 - 1) * 10**9, 'future_uint32': (2**32 - 1) * 10**9,
                 'zero': 0}.get(kind)
        t = self.triple(stamp=max(stamp, 1) if stamp is not None else now)
        for msg in t.values():
            if kind == 'zero':
                msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
            elif kind == 'nanosec_overflow':
                msg.header.stamp.nanosec = 2**32 - 1
            elif kind == 'negative':
                msg.header.stamp.sec = -5
            elif kind == 'sec_2e40':
                msg.header.stamp.sec = 2**40
        return self.as_case(t)

    def imu_burst(self) -> Case:
        n = int(self.rng.integers(5, 60))
        kind = self.pick(('same', 'ns_apart', 'decreasing'))
        s0 = self.clock.next_imu()
        stamps = {'same': [s0] * n, 'ns_apart': [s0 + k for k in range(n)],
                  'decreasing': [s0 - k * 1000 for k in range(n)]}[kind]
        self.clock.imu_ns = max(stamps)
        return [('imu', self.imu(s, self.rng.normal([0, 0, 9.81], 5.0),
                                 self.rng.normal(0, 1.0, 3))) for s in stamps]

    def imu_gap(self) -> Case:
        gap = int(self.rng.uniform(0.15, 30.0) * 1e9)
        self.clock.imu_ns += gap
        self.clock.frame_ns = max(self.clock.frame_ns, self.clock.imu_ns)
        return [('imu', self.imu(self.clock.next_imu())) for _ in range(3)]

    def imu_nan(self) -> Case:
        bad = self.pick((np.nan, np.inf, -np.inf, 1e30, 1e308, -1e308, 5e-324))
        acc, gyro = np.array([0.0, 0.0, 9.81]), np.zeros(3)
        (acc if self.rng.random() < 0.5 else gyro)[int(self.rng.integers(3))] = bad
        msg = self.imu(self.clock.next_imu(), acc, gyro)
        if self.rng.random() < 0.3:
            msg.orientation.w = np.nan
        return [('imu', msg)]

    def empty(self) -> Case:
        t = self.triple()
        role = self.pick(('rgb', 'depth', 'camera_info'))
        msg = t[role]
        kind = self.pick(('zero_size', 'no_data', 'no_encoding'))
        if role == 'camera_info':
            msg.k = np.zeros(0) if kind != 'zero_size' else msg.k
            msg.width = msg.height = 0 if kind == 'zero_size' else msg.width
        elif kind == 'zero_size':
            msg.width = msg.height = msg.step = 0
            msg.data = np.zeros(0, np.uint8)
        elif kind == 'no_data':
            msg.data = np.zeros(0, np.uint8)
        else:
            msg.encoding = ''
        return self.as_case(t)

    def huge(self) -> Case:
        kind = self.pick(('claims', 'big_data', 'big_valid'))
        if kind == 'big_valid':   # a consistent 640x480 frame: valid, just large
            rgb, depth, K = self.frames[0]
            s = self.rng.integers(8, 11)
            big_rgb, big_depth = np.kron(rgb, np.ones((s, s, 1), np.uint8)), \
                np.kron(depth, np.ones((s, s), np.float32))
            K2 = K * np.array([[s, 1, s], [1, s, s], [1, 1, 1]])
            st = self.clock.next_frame()
            h, w = big_depth.shape
            return [('rgb', M.image_msg(self.types, big_rgb, 'rgb8', st, CAMERA_FRAME)),
                    ('depth', M.image_msg(self.types, big_depth, '32FC1', st, CAMERA_FRAME)),
                    ('camera_info', M.camera_info_msg(self.types, K2, w, h, st, CAMERA_FRAME))]
        t = self.triple()
        msg = t[self.pick(('rgb', 'depth'))]
        if kind == 'claims':
            msg.width = msg.height = 100_000
            msg.step = 300_000
        else:   # 6 MB of pixels for a small header
            msg.data = np.zeros(1920 * 1080 * 3, np.uint8)
        return self.as_case(t)

    def fields(self) -> Case:
        """Fields of the wrong type (rclpy's classes refuse them; rosbags' do not)."""
        t = self.triple()
        kind = self.pick(FIELD_CASES)
        if kind == 'acc_none':
            msg = self.imu(self.clock.next_imu())
            msg.linear_acceleration = None
            return [('imu', msg)]
        rgb, info = t['rgb'], t['camera_info']
        if kind == 'data_none':
            rgb.data = None
        elif kind == 'height_str':
            rgb.height = 'forty-eight'
        elif kind == 'encoding_none':
            rgb.encoding = None
        elif kind == 'k_str':
            info.k = ['a'] * 9
        elif kind == 'stamp_none':
            rgb.header.stamp = None
        elif kind == 'width_float':
            rgb.width = float('nan')
        elif kind == 'no_header':
            rgb.header = None
        elif kind == 'data_list_big':
            rgb.data = [300] * len(rgb.data)
        else:
            rgb.step = float('nan')
        return self.as_case(t)
