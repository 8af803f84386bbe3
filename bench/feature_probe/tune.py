"""Pick the number of rounds (and compare a few settings) on October, training on January-September.
The holdout (November-December) is not looked at here."""
import sys, time
from common import *
df = load()
cols = groups("static", "sched_extra", "calendar", "congestion", "prevleg", "history", "live", "wx_cut")
tr = (df["_month"] <= 9).to_numpy(); va = (df["_month"] == 10).to_numpy()
dtr = lgb.Dataset(df.loc[tr, cols].to_numpy("float64"), df.loc[tr, "label"].to_numpy(), feature_name=cols, free_raw_data=False)
dva = lgb.Dataset(df.loc[va, cols].to_numpy("float64"), df.loc[va, "label"].to_numpy(), reference=dtr)
grid = {
    "tuned": PARAMS["tuned"],
    "leaves31_mcs100": {**PARAMS["tuned"], "num_leaves": 31, "min_child_samples": 100},
    "leaves127_mcs400": {**PARAMS["tuned"], "num_leaves": 127, "min_child_samples": 400},
}
for name in sys.argv[1:] or grid:
    t0 = time.time(); ev = {}
    b = lgb.train(grid[name], dtr, num_boost_round=1500, valid_sets=[dva], valid_names=["oct"],
                  callbacks=[lgb.early_stopping(100, verbose=False), lgb.record_evaluation(ev)], feval=None)
    p = b.predict(df.loc[va, cols].to_numpy("float64"), num_iteration=b.best_iteration)
    print(name, "best_iter", b.best_iteration, "oct auc %.4f" % roc_auc_score(df.loc[va, "label"], p), "%.0fs" % (time.time() - t0), flush=True)
