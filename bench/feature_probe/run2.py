"""Clean protocol (null-tail rows out of training and of the headline holdout): baselines, the probe's set,
full v1, full v2 (+ live extras + weather extras)."""
import sys
from common import *
df = load()
V1 = ["static", "sched_extra", "calendar", "congestion", "prevleg", "history", "live_v1", "wx_cut"]
sets = {
    "prod (as shipped, wx at sched hour)": groups("static", "calendar", "trend_calendar", "wx_sched"),
    "prod - month/dom/doy": groups("static", "calendar", "wx_sched"),
    "probe set (reproduced)": PROBE,
    "full v1": groups(*V1),
    "full v2 (+live extras, +wx extras)": groups(*V1, "live_extra", "wx_extra"),
    "full v2 - wx extras": groups(*V1, "live_extra"),
}
for name in sys.argv[2:]:
    fit_eval(df, sets[name], params=sys.argv[1], name=name)
