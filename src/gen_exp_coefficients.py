"""Regenerate the exp/expm1 polynomial coefficients of cyrnn_math.h (developer tool).

    pip install mpmath && python src/gen_exp_coefficients.py

q(r) = (e^r - 1 - r) / r^2 on |r| <= ln2/2, so e^r = 1 + r + r^2·q(r) and
e^r - 1 = r + r^2·q(r). Prints the minimax polynomial for q's relative error
(Remez exchange in 50-digit arithmetic) of degree 9 (double) and 4 (float), as C
literals, and the resulting relative errors of e^r and e^r - 1 with the
coefficients rounded to the target precision.
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 50
HALF_LN2 = mp.log(2) / 2


def q_exact(r):
    if abs(r) < mp.mpf("1e-20"):
        return mp.mpf(1) / 2
    return (mp.exp(r) - 1 - r) / r**2


def remez(degree, a=-HALF_LN2, b=HALF_LN2, iterations=30, grid=4000):
    """Coefficients c[0..degree] of the minimax polynomial for q's relative error."""
    n = degree + 2
    nodes = [(a + b) / 2 - (b - a) / 2 * mp.cos(mp.pi * i / (n - 1)) for i in range(n)]
    xs = [a + (b - a) * i / grid for i in range(grid + 1)]
    for _ in range(iterations):
        A, rhs = mp.matrix(n, n), mp.matrix(n, 1)
        for i, x in enumerate(nodes):
            for k in range(degree + 1):
                A[i, k] = x**k
            A[i, degree + 1] = (-1) ** i * q_exact(x)
            rhs[i] = q_exact(x)
        solution = mp.lu_solve(A, rhs)
        coefficients = [solution[k] for k in range(degree + 1)]
        errors = [(mp.polyval(coefficients[::-1], x) - q_exact(x)) / q_exact(x) for x in xs]
        # new nodes: the alternating local extrema of the error
        extrema = [0] + [i for i in range(1, grid)
                         if (errors[i] - errors[i - 1]) * (errors[i + 1] - errors[i]) <= 0] + [grid]
        alternating = []
        for i in extrema:
            if alternating and mp.sign(errors[alternating[-1]]) == mp.sign(errors[i]):
                if abs(errors[i]) > abs(errors[alternating[-1]]):
                    alternating[-1] = i
            else:
                alternating.append(i)
        while len(alternating) > n:
            alternating.pop(0 if abs(errors[alternating[0]]) < abs(errors[alternating[-1]]) else -1)
        if len(alternating) < n:
            break
        nodes = [xs[i] for i in alternating]
    return coefficients


def check(coefficients, points=2001):
    """Max relative errors of 1 + r + r^2·q and r + r^2·q (Horner in exact arithmetic)."""
    worst_exp = worst_expm1 = mp.mpf(0)
    for i in range(points):
        r = -HALF_LN2 + 2 * HALF_LN2 * i / (points - 1)
        q = mp.mpf(0)
        for c in reversed(coefficients):
            q = q * r + mp.mpf(c)
        worst_exp = max(worst_exp, abs(1 + r + r * r * q - mp.exp(r)) / mp.exp(r))
        if r != 0:
            worst_expm1 = max(worst_expm1, abs(r + r * r * q - mp.expm1(r)) / abs(mp.expm1(r)))
    return float(worst_exp), float(worst_expm1)


if __name__ == "__main__":
    for name, degree, dtype in (("double", 9, np.float64), ("float", 4, np.float32)):
        rounded = [float(dtype(float(c))) for c in remez(degree)]
        print(f"{name}: degree {degree}, highest first")
        for c in reversed(rounded):
            print(f"    {c!r}{'f' if dtype is np.float32 else ''}")
        print("    max relative error: e^r %.2e, e^r - 1 %.2e" % check(rounded))
