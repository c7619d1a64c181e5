"""Score ICANS scale K and steepness n on recorded effect peaks (icans_scan.py output): any-grade, grade >= 3."""

import json
import sys

import numpy as np
from abm.systemic import ICE_ZERO, icans_surrogate

rows = json.load(open(sys.argv[1]))
c = np.array([r["c_peak"] for r in rows])
print("n", len(c), "current grades >=1/>=3:",
      np.mean([r["icans"] >= 1 for r in rows]), np.mean([r["icans"] >= 3 for r in rows]))


def rates(K, n):
    g = [icans_surrogate(x, K, 1.5 * K * ICE_ZERO ** (1 / n), n)[1] for x in c]
    g = np.array(g)
    return (g >= 1).mean(), (g >= 3).mean()


print("check current 505.2/5.131:", rates(505.2, 5.131))
best = []
for n in [1.5, 2, 2.5, 3, 3.5, 4, 5, 5.131]:
    for K in np.geomspace(100, 3000, 61):
        a, s = rates(K, n)
        miss = max(0, 0.22 - a, a - 0.40) ** 2 / 0.05**2 + max(0, 0.09 - s, s - 0.15) ** 2 / 0.04**2
        best.append((miss, abs(a - 0.31) + abs(s - 0.12), n, round(K, 1), a, s))
best.sort()
for b in best[:25]:
    print(b)
for n in [2, 2.5, 3, 3.5, 4, 5.131]:
    cand = [b for b in best if b[2] == n and b[0] == 0]
    print(n, "in-band K range:", (min(b[3] for b in cand), max(b[3] for b in cand)) if cand else None)
