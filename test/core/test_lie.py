# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SO(3)/SE(3)/quaternion maths against matrix_exp, roma and each other, near 0 and near pi."""

import math

import pytest
import roma
import torch

from vssm_ros.core import lie
from vssm_ros.core.lie import (
    boxminus, boxplus, hat, make_pose, matrix_to_quat, orthonormalize, pose_from_tq, rotate_rows,
    quat_canonical, quat_conj, quat_exp, quat_log, quat_mul, quat_normalize, quat_rotate,
    quat_to_matrix, se3_compose, se3_exp, se3_hat, se3_inverse, se3_log, so3_exp,
    so3_left_jacobian, so3_left_jacobian_inv, so3_log, so3_right_jacobian,
    so3_right_jacobian_inv, tq_from_pose, transform_points, vee)

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _axes(n, seed=0):
    a = torch.randn(n, 3, dtype=F64, generator=_gen(seed))
    return a / a.norm(dim=-1, keepdim=True)


def _rotvecs(n, max_angle=math.pi - 1e-3, seed=0):
    """Rotation vectors with angles uniform in (0, max_angle). Shape: (n, 3)."""
    angle = torch.rand(n, 1, dtype=F64, generator=_gen(seed + 1)) * max_angle
    return _axes(n, seed) * angle


def _angle_batch(angles, seed=0):
    """Rotation vectors with the given angles about random axes. Shape: (len(angles) * 8, 3)."""
    ang = torch.tensor(angles, dtype=F64).repeat_interleave(8)[:, None]
    return _axes(ang.shape[0], seed) * ang


# --------------------------------------------------------------------------------------- #
# so(3)
# --------------------------------------------------------------------------------------- #

def test_hat_is_cross_product_and_vee_inverts_it():
    w = torch.randn(5, 3, dtype=F64, generator=_gen())
    v = torch.randn(5, 3, dtype=F64, generator=_gen(1))
    assert torch.allclose((hat(w) @ v[..., None])[..., 0], torch.linalg.cross(w, v))
    assert torch.equal(vee(hat(w)), w)
    assert torch.equal(hat(w).transpose(-1, -2), -hat(w))


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_so3_exp_matches_matrix_exp(dtype, tol):
    w = torch.cat([_rotvecs(64, 3 * math.pi),  # also angles beyond pi
                   _angle_batch([0.0, 1e-8, 1e-4, 1e-2, 0.011, math.pi])]).to(dtype)
    R = so3_exp(w)
    assert R.dtype == dtype
    # Reference in float64 (matrix_exp itself is less accurate than Rodrigues in float32).
    ref = torch.linalg.matrix_exp(hat(w.double())).to(dtype)
    assert torch.allclose(R, ref, atol=tol, rtol=0)
    eye = torch.eye(3, dtype=dtype)
    assert torch.allclose(R @ R.transpose(-1, -2), eye.expand_as(R), atol=tol, rtol=0)
    assert torch.allclose(torch.linalg.det(R), torch.ones(R.shape[0], dtype=dtype), atol=tol)


def test_so3_log_inverts_exp_everywhere_below_pi():
    w = torch.cat([_rotvecs(256), _angle_batch([1e-12, 1e-8, 1e-5, 9.9e-3, 1e-2, 0.5, 1.0,
                                                2.0, 2.3, 2.5, 3.0, 3.1])])
    err = (so3_log(so3_exp(w)) - w).abs().max()
    assert err < 1e-13


def test_so3_log_tiny_angle_keeps_relative_precision():
    w = _angle_batch([1e-8, 1e-12])
    out = so3_log(so3_exp(w))
    assert torch.allclose(out, w, rtol=1e-7, atol=0)


def test_so3_log_near_pi():
    w = _angle_batch([math.pi - 1e-6, math.pi - 1e-9])
    out = so3_log(so3_exp(w))
    assert (out - w).abs().max() < 1e-9


def test_so3_log_exactly_pi_returns_a_valid_log():
    # Rotations by pi about coordinate axes and random axes: +-axis*pi are both logs.
    axes = torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64), _axes(16)])
    R = so3_exp(axes * math.pi)
    out = so3_log(R)
    assert torch.allclose(out.norm(dim=-1), torch.full((22,), math.pi, dtype=F64), atol=1e-12)
    assert torch.allclose(so3_exp(out), R, atol=1e-12)
    parallel = (out / math.pi * axes).sum(-1).abs()
    assert torch.allclose(parallel, torch.ones(22, dtype=F64), atol=1e-12)


def test_so3_log_float32_near_pi_and_zero():
    w = _angle_batch([1e-6, 0.3, 3.0, math.pi - 1e-3]).float()
    out = so3_log(so3_exp(w))
    assert out.dtype == torch.float32
    assert (out - w).abs().max() < 2e-3  # float32 near pi: sin(theta) ~ 1e-3 is the limit
    assert (out[:16] - w[:16]).abs().max() < 2e-6


def test_so3_gradients_finite_at_zero_and_pi():
    w = torch.zeros(3, dtype=F64, requires_grad=True)
    so3_exp(w).sum().backward()
    # d(sum R)/dw at 0 = sum of the generators' entries = 0, and finite.
    assert torch.isfinite(w.grad).all() and w.grad.abs().max() < 1e-15

    w = torch.tensor([1e-9, -2e-9, 3e-9], dtype=F64, requires_grad=True)
    J = torch.autograd.functional.jacobian(lambda x: so3_log(so3_exp(x)), w)
    assert torch.allclose(J, torch.eye(3, dtype=F64), atol=1e-12)

    R = torch.eye(3, dtype=F64, requires_grad=True)
    out = so3_log(R)
    out.sum().backward()
    assert torch.isfinite(R.grad).all()

    R = so3_exp(torch.tensor([0.0, 0.0, math.pi], dtype=F64)).requires_grad_(True)
    so3_log(R).sum().backward()
    assert torch.isfinite(R.grad).all()


def test_gradcheck_so3_exp():
    w = torch.cat([_rotvecs(6, 3.0), _angle_batch([1e-3])[:2]]).requires_grad_(True)
    assert torch.autograd.gradcheck(so3_exp, (w,))
    # Exactly zero: the series branch.
    assert torch.autograd.gradcheck(so3_exp, (torch.zeros(1, 3, dtype=F64,
                                                          requires_grad=True),))


def test_gradcheck_so3_log_all_regimes_away_from_pi():
    # Small (series), general, and the symmetric-part branch (cos < -0.7) below pi.
    w = _angle_batch([1e-3, 0.7, 2.0, 2.6, 3.0])[::4]  # two random axes per angle
    R = so3_exp(w).requires_grad_(True)
    assert torch.autograd.gradcheck(so3_log, (R,))


def test_so3_log_gradient_is_inverse_right_jacobian():
    # d Log(R Exp(d)) / d d at 0 = J_r(Log R)^-1.
    for w in _angle_batch([1e-3, 1.0, 2.9])[::4]:
        R = so3_exp(w)
        J = torch.autograd.functional.jacobian(lambda d: so3_log(R @ so3_exp(d)),
                                               torch.zeros(3, dtype=F64))
        assert torch.allclose(J, so3_right_jacobian_inv(w), atol=1e-10)


@pytest.mark.parametrize('angle', [0.0, 1e-6, 5e-3, 0.5, 2.0, 3.0])
def test_jacobians_by_differentiation(angle):
    w = _axes(1, seed=3)[0] * angle
    zero = torch.zeros(3, dtype=F64)
    # Exp(w + d) = Exp(J_l d) Exp(w) = Exp(w) Exp(J_r d) to first order.
    Jl = torch.autograd.functional.jacobian(
        lambda d: so3_log(so3_exp(w + d) @ so3_exp(w).transpose(-1, -2)), zero)
    Jr = torch.autograd.functional.jacobian(
        lambda d: so3_log(so3_exp(w).transpose(-1, -2) @ so3_exp(w + d)), zero)
    assert torch.allclose(so3_left_jacobian(w), Jl, atol=1e-10)
    assert torch.allclose(so3_right_jacobian(w), Jr, atol=1e-10)
    eye = torch.eye(3, dtype=F64)
    assert torch.allclose(so3_left_jacobian(w) @ so3_left_jacobian_inv(w), eye, atol=1e-12)
    assert torch.allclose(so3_right_jacobian(w) @ so3_right_jacobian_inv(w), eye, atol=1e-12)


def test_inverse_jacobians_near_pi_are_finite_and_correct():
    w = _angle_batch([math.pi - 1e-6, math.pi])
    eye = torch.eye(3, dtype=F64).expand(w.shape[0], 3, 3)
    assert torch.allclose(so3_left_jacobian(w) @ so3_left_jacobian_inv(w), eye, atol=1e-9)


def test_orthonormalize_matches_svd_projection():
    R = so3_exp(_rotvecs(32))
    noisy = R + 1e-2 * torch.randn(R.shape, dtype=F64, generator=_gen(5))
    U, _, Vh = torch.linalg.svd(noisy)
    expected = U @ Vh
    out = orthonormalize(noisy)
    assert torch.allclose(out, expected, atol=1e-13)
    assert torch.allclose(orthonormalize(R), R, atol=1e-14)
    # Badly scaled input still converges.
    assert torch.allclose(orthonormalize(5.0 * R), R, atol=1e-12)


def test_orthonormalize_gradient_finite_at_exact_rotation():
    R = so3_exp(_rotvecs(4)).requires_grad_(True)
    orthonormalize(R).pow(2).sum().backward()
    assert torch.isfinite(R.grad).all()
    assert torch.autograd.gradcheck(orthonormalize, (R.detach().requires_grad_(True),))


# --------------------------------------------------------------------------------------- #
# Quaternions (xyzw), against roma (also xyzw)
# --------------------------------------------------------------------------------------- #

def _quats(n, seed=0):
    return quat_normalize(torch.randn(n, 4, dtype=F64, generator=_gen(seed)))


def test_quaternion_algebra_matches_roma():
    q1, q2 = _quats(64, 0), _quats(64, 1)
    v = torch.randn(64, 3, dtype=F64, generator=_gen(2))
    assert torch.allclose(quat_mul(q1, q2), roma.quat_product(q1, q2), atol=1e-14)
    assert torch.allclose(quat_conj(q1), roma.quat_conjugation(q1), atol=0)
    assert torch.allclose(quat_rotate(q1, v), roma.quat_action(q1, v), atol=1e-14)
    assert torch.allclose(quat_to_matrix(q1), roma.unitquat_to_rotmat(q1), atol=1e-14)
    w = _rotvecs(64)
    assert torch.allclose(quat_exp(w), quat_canonical(roma.rotvec_to_unitquat(w)), atol=1e-14)
    assert torch.allclose(quat_log(q1), roma.unitquat_to_rotvec(quat_canonical(q1)),
                          atol=1e-13)


def test_matrix_to_quat_matches_roma_including_180_degrees():
    w = torch.cat([_rotvecs(128),
                   torch.eye(3, dtype=F64) * math.pi,  # each of the four Shepperd cases
                   _axes(8) * math.pi,
                   _angle_batch([0.0, 1e-9, math.pi - 1e-7])])
    R = so3_exp(w)
    q = matrix_to_quat(R)
    expected = quat_canonical(roma.rotmat_to_unitquat(R))
    # At exactly pi (w == 0) q and -q are both canonical: compare up to sign.
    sign = torch.where((q * expected).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(F64)
    assert torch.allclose(q, sign * expected, atol=1e-14)
    assert (q[..., 3] >= 0).all()
    assert torch.allclose(quat_to_matrix(q), R, atol=1e-14)


def test_quaternion_functions_agree_with_each_other():
    q1, q2 = _quats(32, 3), _quats(32, 4)
    v = torch.randn(32, 3, dtype=F64, generator=_gen(5))
    R1, R2 = quat_to_matrix(q1), quat_to_matrix(q2)
    assert torch.allclose(quat_to_matrix(quat_mul(q1, q2)), R1 @ R2, atol=1e-14)
    assert torch.allclose(quat_rotate(q1, v), (R1 @ v[..., None])[..., 0], atol=1e-14)
    assert torch.allclose(quat_to_matrix(quat_conj(q1)), R1.transpose(-1, -2), atol=1e-14)
    assert torch.allclose(matrix_to_quat(R1), quat_canonical(q1), atol=1e-14)
    w = torch.cat([_rotvecs(32), _angle_batch([0.0, 1e-9, 1e-3])])
    assert torch.allclose(quat_to_matrix(quat_exp(w)), so3_exp(w), atol=1e-14)
    assert torch.allclose(quat_log(quat_exp(w)), w, atol=1e-13)
    assert torch.allclose(quat_log(q1), so3_log(R1), atol=1e-12)
    # quat_log canonicalises: q and -q give the same rotation vector; scale does not matter.
    assert torch.allclose(quat_log(-3.0 * q1), quat_log(q1), atol=1e-13)


def test_quat_log_exp_near_pi_and_zero():
    w = _angle_batch([1e-12, 1e-6, math.pi - 1e-6])
    assert (quat_log(quat_exp(w)) - w).abs().max() < 1e-12


def test_gradcheck_quaternions():
    q = _quats(6).requires_grad_(True)
    assert torch.autograd.gradcheck(quat_to_matrix, (q,))
    assert torch.autograd.gradcheck(quat_log, (q,))
    w = torch.cat([_rotvecs(4), _angle_batch([1e-3])[:2]]).requires_grad_(True)
    assert torch.autograd.gradcheck(quat_exp, (w,))
    R = so3_exp(_rotvecs(8, seed=2)).requires_grad_(True)
    assert torch.autograd.gradcheck(matrix_to_quat, (R,))


# --------------------------------------------------------------------------------------- #
# SE(3)
# --------------------------------------------------------------------------------------- #

def _twists(n, seed=0):
    rho = torch.randn(n, 3, dtype=F64, generator=_gen(seed + 7))
    return torch.cat([rho, _rotvecs(n, seed=seed)], dim=-1)


def test_se3_exp_matches_matrix_exp_of_twist():
    xi = torch.cat([_twists(64), torch.tensor([[1.0, -2.0, 0.5, 0.0, 0.0, 0.0],
                                               [1.0, -2.0, 0.5, 1e-9, 0.0, -1e-9]],
                                              dtype=F64)])
    assert torch.allclose(se3_exp(xi), torch.linalg.matrix_exp(se3_hat(xi)), atol=1e-13)


def test_se3_log_exp_round_trip():
    near_pi = torch.cat([torch.ones(8, 3, dtype=F64), _angle_batch([math.pi - 1e-6])], -1)
    tiny = torch.cat([torch.ones(8, 3, dtype=F64), _angle_batch([1e-9])], -1)
    xi = torch.cat([_twists(64), near_pi, tiny])
    assert (se3_log(se3_exp(xi)) - xi).abs().max() < 1e-9
    T = se3_exp(_twists(16, seed=4))
    assert torch.allclose(se3_exp(se3_log(T)), T, atol=1e-13)


def test_gradcheck_se3_exp_and_log():
    xi = torch.cat([_twists(4), torch.tensor([[0.3, 0.2, -0.1, 0.0, 0.0, 0.0]], dtype=F64)])
    assert torch.autograd.gradcheck(se3_exp, (xi.requires_grad_(True),))
    T = se3_exp(_twists(2, seed=2)).requires_grad_(True)
    assert torch.autograd.gradcheck(se3_log, (T,))


def test_inverse_compose_and_transform_points():
    T_a_b = se3_exp(_twists(5, seed=1))
    T_b_c = se3_exp(_twists(5, seed=2))
    eye = torch.eye(4, dtype=F64).expand(5, 4, 4)
    assert torch.allclose(se3_compose(T_a_b, se3_inverse(T_a_b)), eye, atol=1e-14)
    assert torch.allclose(se3_inverse(T_a_b), torch.linalg.inv(T_a_b), atol=1e-13)
    p = torch.randn(5, 7, 3, dtype=F64, generator=_gen(3))
    homog = torch.cat([p, torch.ones(5, 7, 1, dtype=F64)], -1)
    expected = (T_a_b[:, None] @ homog[..., None])[..., :3, 0]
    assert torch.allclose(transform_points(T_a_b, p), expected, atol=1e-14)
    assert torch.allclose(transform_points(se3_compose(T_a_b, T_b_c), p),
                          transform_points(T_a_b, transform_points(T_b_c, p)), atol=1e-13)
    # One transform broadcast over a (S, B, N, 3) batch, and (B) transforms over (S, B, N, 3).
    p4 = p.expand(2, 5, 7, 3)
    assert transform_points(T_a_b[0], p4).shape == (2, 5, 7, 3)
    assert torch.allclose(transform_points(T_a_b, p4)[1], expected, atol=1e-14)


def test_pose_tq_round_trip_and_make_pose_broadcast():
    q = _quats(6)
    t = torch.randn(6, 3, dtype=F64, generator=_gen(1))
    T = pose_from_tq(t, q)
    t2, q2 = tq_from_pose(T)
    assert torch.equal(t2, t)
    assert torch.allclose(q2, quat_canonical(q), atol=1e-14)
    assert torch.equal(T[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64).expand(6, 4))
    T1 = make_pose(torch.eye(3, dtype=F64), t)  # one R, many t
    assert T1.shape == (6, 4, 4) and torch.equal(T1[:, :3, 3], t)


def test_boxplus_convention_world_translation_body_rotation():
    T = se3_exp(_twists(8, seed=5))
    d_t = torch.tensor([0.1, -0.2, 0.3], dtype=F64)
    d_r = torch.tensor([0.02, 0.01, -0.03], dtype=F64)
    Tt = boxplus(T, torch.cat([d_t, torch.zeros(3, dtype=F64)]).expand(8, 6))
    assert torch.allclose(Tt[:, :3, 3], T[:, :3, 3] + d_t, atol=1e-15)  # world frame
    assert torch.allclose(Tt[:, :3, :3], T[:, :3, :3], atol=0)
    Tr = boxplus(T, torch.cat([torch.zeros(3, dtype=F64), d_r]).expand(8, 6))
    assert torch.allclose(Tr[:, :3, :3], T[:, :3, :3] @ so3_exp(d_r), atol=1e-15)  # right
    assert not torch.allclose(Tr[:, :3, :3], so3_exp(d_r) @ T[:, :3, :3], atol=1e-3)
    delta = torch.cat([torch.randn(8, 3, dtype=F64, generator=_gen(6)), _rotvecs(8)], -1)
    assert torch.allclose(boxminus(boxplus(T, delta), T), delta, atol=1e-12)


def test_dtype_follows_input_and_shape_errors():
    w = torch.zeros(2, 3, dtype=torch.float32)
    assert so3_exp(w).dtype == torch.float32
    assert se3_exp(torch.zeros(6)).dtype == torch.float32
    with pytest.raises(ValueError, match='last dimension of 3'):
        so3_exp(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r'\(4, 4\)'):
        se3_log(torch.zeros(3, 3))
    with pytest.raises(ValueError, match='quat_mul'):
        quat_mul(torch.zeros(3), torch.zeros(4))


def test_no_host_sync_branches_in_source():
    # Value-dependent Python branching would make CUDA graphs and batching impossible. Values
    # are read only on the CPU path of a single rotation (core.lie_host), behind _on_host.
    src = open(lie.__file__, encoding='utf-8').read()
    assert '.item()' not in src and 'bool(' not in src
    lines = src.splitlines()
    reads = [i for i, line in enumerate(lines) if '.tolist()' in line]
    assert len(reads) == 3
    assert all('if _on_host(' in lines[i - 1] for i in reads)


def test_no_value_read_off_the_cpu():
    # A device other than the CPU (meta: no values at all) takes the torch path: single
    # rotations there must not read values back to the host (a GPU sync per call).
    w = torch.zeros(3, device='meta')
    R = torch.eye(3, device='meta')
    assert so3_exp(w).shape == (3, 3)
    assert so3_log(R).shape == (3,)
    assert orthonormalize(R).shape == (3, 3)


@pytest.mark.parametrize('scale', [0.0, 1e-5, 1e-3, 0.3, 2.0, math.pi - 1e-4, math.pi])
def test_single_cpu_rotations_equal_the_batched_torch_path(scale):
    # core.lie_host computes one CPU rotation in Python floats: the same formulas, regimes
    # (series near 0, near pi) and thresholds as the torch path that batches take.
    axes = torch.nn.functional.normalize(torch.randn(64, 3, dtype=F64, generator=_gen(9)),
                                         dim=-1)
    w = axes * scale
    R = so3_exp(w)
    assert torch.allclose(torch.stack([so3_exp(x) for x in w]), R, atol=1e-14)
    logs = torch.stack([so3_log(x) for x in R])
    ref = so3_log(R)
    if scale == math.pi:   # the sign of a log at exactly pi is arbitrary: compare rotations
        assert torch.allclose(so3_exp(logs), so3_exp(ref), atol=1e-12)
    else:
        assert torch.allclose(logs, ref, atol=1e-12)
    noisy = R + 1e-3 * torch.randn(R.shape, dtype=F64, generator=_gen(10))
    assert torch.allclose(torch.stack([orthonormalize(x) for x in noisy]),
                          orthonormalize(noisy), atol=1e-14)
    # float32 in, float32 out; and a tensor that needs a gradient keeps autograd's path
    assert so3_exp(w[0].float()).dtype == torch.float32
    x = w[0].clone().requires_grad_(True)
    so3_log(so3_exp(x)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize('shapes', [((), ()), ((3,), ()), ((2, 1), (1, 4)), ((5, 1, 3), (4, 1)),
                                    ((0,), (1,)), ((2, 3), (2, 3), (1, 3), ())])
def test_broadcast_shapes_equals_torchs(shapes):
    assert lie.broadcast_shapes(*shapes) == torch.broadcast_shapes(*shapes)


def test_broadcast_shapes_refuses_what_torch_refuses():
    with pytest.raises(RuntimeError, match='cannot be broadcast'):
        lie.broadcast_shapes((2, 3), (4,))
    with pytest.raises(RuntimeError):
        torch.broadcast_shapes((2, 3), (4,))


def test_the_engine_imports_nothing_heavy_on_its_first_frames():
    # torch.broadcast_shapes imported sympy (0.5 s) inside the first frame: the node's start-up
    # backlog. A fresh interpreter, the engine over a short flight, then sympy must be absent.
    import subprocess
    import sys
    code = ('import sys\n'
            'from vssm_ros.config import EngineConfig, SyntheticConfig\n'
            'from vssm_ros.core.engine import SlamEngine\n'
            'from vssm_ros.data.synthetic import generate_flight\n'
            'from vssm_ros.types import Frame, ImuSample\n'
            'f = generate_flight(SyntheticConfig(duration_s=1.2, hover_s=0.2, ramp_s=0.5,'
            '                                    width=32, height=24))\n'
            'e = SlamEngine(EngineConfig(), f.gt_frames.T_world_body[0])\n'
            'n = 0\n'
            'for x in f.items():\n'
            '    if isinstance(x, ImuSample):\n'
            '        e.add_imu(x)\n'
            '    elif isinstance(x, Frame):\n'
            '        e.step(x)\n'
            '        n += 1\n'
            'assert n >= 5, n\n'
            'print("sympy" in sys.modules)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'False'


@pytest.mark.parametrize('shape', [(1, 3), (7, 3), (100003, 3), (64, 24, 3)])
@pytest.mark.parametrize('dtype', [torch.float32, F64])
def test_rotate_rows_equals_the_row_matmul_to_the_bit(shape, dtype):
    # The map's hot paths (fusion, free space, renders) swap x @ R.T for rotate_rows, which
    # is faster on the CPU: the maps they build must stay the same to the bit.
    g = _gen(11)
    x = 5 * torch.randn(shape, generator=g).to(dtype)
    R = so3_exp(torch.randn(3, generator=g).to(dtype))
    assert torch.equal(rotate_rows(R, x), x @ R.t())
    assert torch.equal(rotate_rows(R.t(), x), x @ R)
    assert rotate_rows(R, x).shape == shape
    with pytest.raises(ValueError, match='rotate_rows'):
        rotate_rows(R, torch.zeros(4, 2))
