"""Clean protocol: per-group ablation of the final strict set, weather and calendar variants, seeds."""
import sys
from common import *
df = load()
FINAL = ["static", "sched_extra", "calendar", "congestion", "prevleg", "history", "live_v1", "live_extra", "wx_cut"]
def without(*gs): return groups(*[g for g in FINAL if g not in gs])
V = {
    "final": groups(*FINAL),
    "-prevleg": without("prevleg"),
    "-history": without("history"),
    "-congestion": without("congestion"),
    "-weather": without("wx_cut"),
    "-live (same-day, before cutoff)": without("live_v1", "live_extra"),
    "-live -prevleg (start-of-day info only)": without("live_v1", "live_extra", "prevleg"),
    "-sched_extra": without("sched_extra"),
    "start-of-day contract (no live, no weather, prev leg timetable only)": groups("static", "sched_extra", "calendar",
        "congestion", "history", "prev_gap_min", "prev_block_min", "prev_turn_min", "prev_slack_min", "prev2_gap_min",
        "tail_leg_of_day", "prev_dest"),
    "-calendar (dow, weekend)": without("calendar"),
    "wx at sched hour instead of cutoff": without("wx_cut") + G["wx_sched"],
    "wx cut + sched hour": groups(*FINAL) + G["wx_sched"],
    "+holiday distance": groups(*FINAL) + G["holiday"],
    "+doy sin/cos": groups(*FINAL) + G["doy_cyc"],
    "+month": groups(*FINAL) + ["month"],
    "+month/dom/doy": groups(*FINAL) + G["trend_calendar"],
    "static+calendar+wx_cut": groups("static", "sched_extra", "calendar", "wx_cut"),
    "  +congestion": groups("static", "sched_extra", "calendar", "wx_cut", "congestion"),
    "  +congestion+history": groups("static", "sched_extra", "calendar", "wx_cut", "congestion", "history"),
    "  +congestion+history+prevleg": groups("static", "sched_extra", "calendar", "wx_cut", "congestion", "history", "prevleg"),
}
args = sys.argv[1:]
params = "tuned"
if args and args[0] in PARAMS:
    params, args = args[0], args[1:]
for name in args:
    if name.startswith("seed="):
        PARAMS[params]["seed"] = int(name[5:])
        fit_eval(df, V["final"], params=params, name=f"final {name}")
    else:
        fit_eval(df, V[name], params=params, name=name)
