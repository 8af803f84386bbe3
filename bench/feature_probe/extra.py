"""What is known of the previous leg at the cutoff; how much a leaky previous-leg delay (no 2h rule) would add."""
from common import *
df = load()
ho = df[df["_month"] > 10]
st = df["prev_dep_state"].map({0: "not due yet (sched dep >= c)", 1: "departed before c", 2: "overdue at c (sched < c, not departed)"}).fillna("no previous leg within 48h / no tail")
print((st.value_counts(normalize=True)).round(3).to_string())
print(df.groupby(st)["label"].mean().round(3).to_string())
ast = df["prev_arr_state"].map({0: "not due", 1: "arrived before c", 2: "overdue"}).fillna("none")
print((ast.value_counts(normalize=True)).round(3).to_string())
FINAL = ["static", "sched_extra", "calendar", "congestion", "prevleg", "history", "live_v1", "live_extra", "wx_cut"]
fit_eval(df, groups(*FINAL) + ["leaky_prev_dep_delay_no2h"], name="final + prev dep delay WITHOUT the 2h rule (leaky)")
