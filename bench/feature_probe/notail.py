"""Null-tail artifact: where are the 2,512 tail-less (all cancelled) flights, and does the model need them?"""
from common import *
df = load()
canc = df["_cancelled"]
nt = df["_tailnum"].isna()
print("null-tail share of cancelled per carrier:")
print(pd.crosstab(df.loc[canc, "carrier"], nt[canc]).assign(share=lambda x: x[True] / x.sum(axis=1)).round(2).to_string())
for col in ["live_nyc_overdue_360", "live_origin_overdue_60", "hist_all_1d_rate", "plane_seats", "prev_exists"]:
    print(col, "null-tail cancelled: %.3f   tail-known cancelled: %.3f" % (df.loc[nt, col].mean(), df.loc[canc & ~nt, col].mean()))
cols = groups("static", "sched_extra", "calendar", "congestion", "prevleg", "history", "live", "wx_cut")
tail = df["_tailnum"].notna().to_numpy()
fit_eval(df, cols, params="tuned", name="full, null-tail rows dropped from training", drop_train_mask=~tail,
         extra_masks={"tail_known": tail})
nop = [c for c in cols if not c.startswith("plane_")]
fit_eval(df, nop, params="tuned", name="full - plane_* (tail-derived reference data)", extra_masks={"tail_known": tail})
