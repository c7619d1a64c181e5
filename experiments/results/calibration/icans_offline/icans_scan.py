"""Peak ICANS effect C per patient of the 100-patient calibration cohort (seed 2018, 200^2, 28 d)."""

import json
import sys
from concurrent.futures import ProcessPoolExecutor

from abm.cohort import sample_cohort
from abm.params import Params


def one(job_and_base):
    job, base = job_and_base
    from abm.model import MarrowModel
    params = Params(base).replace({**job.overrides, "time.days": job.days})
    m = MarrowModel(params, seed=job.seed, backend="cpu", threads=1).run()
    df = m.datacollector.get_model_vars_dataframe()
    return {"patient": job.index, "c_peak": float(df["icans_effect_pg_ml"].max()), "icans": int(m.body.icans_peak),
            "crs": int(m.body.crs_peak), "steroids": bool(m.body.steroids_given),
            "il6_peak": float(df["serum_il6_pg_ml"].max())}


if __name__ == "__main__":
    n = int(sys.argv[1])
    extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    base = Params.default().replace({"grid.size": 200, "time.days": 28.0, **extra})
    jobs = sample_cohort(n, 2018, base, days=28.0)
    with ProcessPoolExecutor(2) as ex:
        rows = list(ex.map(one, [(j, base.flat()) for j in jobs]))
    json.dump(rows, open(sys.argv[2], "w"))
    print("done", len(rows))
