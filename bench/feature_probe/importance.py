"""Top feature importances (gain) of the full strict set; group shares; calibration of null-tail rows."""
from common import *
df = load()
FINAL = ["static", "sched_extra", "calendar", "congestion", "prevleg", "history", "live_v1", "live_extra", "wx_cut"]
cols = groups(*FINAL)
b, p, rec = fit_eval(df, cols, params="tuned", name="final (importance run)", clean=False)
gain = pd.Series(b.feature_importance("gain"), index=cols)
share = (gain / gain.sum()).sort_values(ascending=False)
split = pd.Series(b.feature_importance("split"), index=cols)
print(pd.DataFrame({"gain_share": share.round(4), "splits": split[share.index]}).head(30).to_string())
grp = {c: g for g in FINAL for c in groups(g)}
print(share.groupby(share.index.map(grp)).sum().sort_values(ascending=False).round(3).to_string())
te = (df["_month"] > 10).to_numpy(); h = df[te].assign(p=p)
h["kind"] = np.where(h["_tailnum"].isna(), "cancelled, no tail", np.where(h["_cancelled"], "cancelled, tail known",
            np.where(h["_diverted"], "diverted", np.where(h["label"] == 1, "late", "on time"))))
print(h.groupby("kind")["p"].agg(["size", "mean", "median"]).round(3).to_string())
share.to_csv(OUT + "/importance_gain_allrows.csv")
b, p, rec = fit_eval(df, cols, params="tuned", name="final (importance run, clean)")
gain = pd.Series(b.feature_importance("gain"), index=cols); share = (gain / gain.sum()).sort_values(ascending=False)
split = pd.Series(b.feature_importance("split"), index=cols)
print(pd.DataFrame({"gain_share": share.round(4), "splits": split[share.index], "group": share.index.map(grp)}).head(30).to_string())
print(share.groupby(share.index.map(grp)).sum().sort_values(ascending=False).round(3).to_string())
share.to_csv(OUT + "/importance_gain.csv")
