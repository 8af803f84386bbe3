"""Feature groups, LightGBM params, metrics shared by the probe scripts."""
import json, os, time
import numpy as np, pandas as pd, lightgbm as lgb
from sklearn.metrics import roc_auc_score, average_precision_score, log_loss, brier_score_loss

# Where build.py writes the feature table and fit_eval appends its results.
OUT = os.environ.get("FEATURE_PROBE_OUT", "/tmp/feature-probe")

CATS = ["carrier", "origin", "dest", "plane_type", "plane_manufacturer", "plane_engine", "prev_dest"]
G = {}
G["static"] = ["carrier", "origin", "dest", "plane_type", "plane_manufacturer", "plane_engine", "distance",
               "sched_dep_hour", "sched_dep_minute", "sched_arr_hour", "plane_age", "plane_seats", "plane_engines",
               "dest_lat", "dest_lon", "dest_alt", "dest_tz_offset"]
G["sched_extra"] = ["sched_block_min", "sched_speed"]
G["calendar"] = ["day_of_week", "is_weekend"]
G["trend_calendar"] = ["month", "day_of_month", "day_of_year"]
G["holiday"] = ["holiday_days", "holiday_abs_days"]
G["doy_cyc"] = ["doy_sin", "doy_cos"]
WX = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
G["wx_sched"] = [f"wxs_{c}" for c in WX]
G["wx_cut"] = [f"wxc_{c}" for c in WX] + ["wxc_precip_3h", "wxc_visib_min_3h", "wxc_wind_max_3h", "wxc_pressure_d3h"]
G["congestion"] = ["cong_origin_hour", "cong_origin_day", "cong_nyc_hour", "cong_carrier_origin_day", "cong_dest_day",
                   "cong_origin_pm30", "cong_dest_arr_hour"]
G["prevleg"] = ["prev_gap_min", "prev_block_min", "prev_turn_min", "prev_slack_min", "prev_dep_state", "prev_dep_delay_c",
                "prev_arr_state", "prev_arr_delay_c", "prev_known_delay_c", "prev_proj_delay", "prev_dest",
                "prev2_dep_delay_c", "prev2_gap_min", "tail_leg_of_day"]
G["history"] = None  # filled from columns: hist_*
G["live_v1"] = [f"live_{k}_dep_{m}_{w}" for k in ("origin", "nyc", "carrier") for w in (60, 180) for m in ("n", "mean", "late")] \
    + [f"live_{k}_overdue_{w}" for k in ("origin", "nyc") for w in (60, 360)] \
    + [f"live_{k}_arr_{m}" for k in ("dest", "prevdest") for m in ("n_180", "mean_180", "late_180", "overdue_360")] \
    + [f"live_{k}_known_{m}" for k in ("origin", "carrier") for m in ("n_360", "late_360")]
G["live_extra"] = ["live_origin_overdue_frac_60", "live_carrier_overdue_360", "live_carrier_origin_overdue_360",
                   "live_origin_dep_mean_720", "live_origin_dep_late_720", "live_destdep_n_180", "live_destdep_mean_180",
                   "live_destdep_late_180", "live_destdep_overdue_360"]
G["wx_extra"] = ["wxc_precip_6h", "wxc_visib_d3h", "wxc_freezing_precip"]

# the quick probe's set (reproduced): previous leg's departure delay when departed before the cutoff,
# the gap, trailing 7-day carrier/origin/route rates, yesterday's whole-airport rate, congestion
PROBE = G["static"] + G["calendar"] + G["wx_sched"] + ["probe_prev_dep_delay", "prev_gap_min",
        "hist_carrier_7d_rate", "hist_origin_7d_rate", "hist_route_7d_rate", "hist_origin_1d_rate",
        "cong_origin_hour", "cong_origin_day"]

PARAMS = {
    "default": dict(objective="binary", num_leaves=31, learning_rate=0.1, min_child_samples=20, reg_lambda=0.0,
                    bagging_fraction=0.8, bagging_freq=1, feature_fraction=0.8, num_threads=1, verbose=-1, seed=13),
    "tuned": dict(objective="binary", metric="auc", num_leaves=63, learning_rate=0.05, min_child_samples=200, reg_lambda=5.0,
                  bagging_fraction=0.8, bagging_freq=1, feature_fraction=0.5, num_threads=1, verbose=-1, seed=13),
}
ROUNDS = {"default": 100, "tuned": 250}


def load(path=OUT + "/features.parquet"):
    df = pd.read_parquet(path)
    G["history"] = [c for c in df.columns if c.startswith("hist_")]
    G["live"] = [c for c in df.columns if c.startswith("live_")]
    assert set(G["live"]) == set(G["live_v1"] + G["live_extra"]), set(G["live"]) ^ set(G["live_v1"] + G["live_extra"])
    df["probe_prev_dep_delay"] = np.where(df["prev_dep_state"] == 1, df["prev_dep_delay_c"], np.nan)
    train = df["_month"] <= 10
    for c in CATS:  # string-index by frequency on the training rows (unseen/NaN -> NaN)
        order = df.loc[train, c].value_counts().index
        df[c] = df[c].map({v: i for i, v in enumerate(order)}).astype("float64")
    return df


def groups(*names):
    cols = []
    for n in names:
        for c in (G[n] if n in G else [n]):
            if c not in cols:
                cols.append(c)
    return cols


def metrics(y, p):
    return dict(roc_auc=roc_auc_score(y, p), pr_auc=average_precision_score(y, p), log_loss=log_loss(y, p),
                brier=brier_score_loss(y, p), mean_pred=float(np.mean(p)), pos_rate=float(np.mean(y)))


def fit_eval(df, cols, params="tuned", rounds=None, name="", log=OUT + "/results.jsonl", extra_masks=None,
             drop_train_mask=None, clean=True):
    """clean=True (the protocol of the report): rows without a tailnum (2,512 flights, every one cancelled: an
    artifact of the data, the tail of a cancelled flight was not recorded for UA, US, 9E, F9) are dropped from
    training, and the headline metrics are on the holdout rows with a tailnum; roc_auc_all_rows scores every row."""
    tr = (df["_month"] <= 10).to_numpy(); te_all = ~tr
    tail = df["_tailnum"].notna().to_numpy()
    if drop_train_mask is not None:
        tr = tr & ~drop_train_mask
    if clean:
        tr = tr & tail
        extra_masks = {"all_rows": np.ones(len(df), bool), **(extra_masks or {})}
        te = te_all & tail
    else:
        te = te_all
    rounds = rounds or ROUNDS[params]
    t0 = time.time()
    ds = lgb.Dataset(df.loc[tr, cols].to_numpy("float64"), df.loc[tr, "label"].to_numpy(), feature_name=cols,
                     free_raw_data=True)
    b = lgb.train(PARAMS[params], ds, num_boost_round=rounds)
    fit_s = time.time() - t0
    pa = b.predict(df.loc[te_all, cols].to_numpy("float64"))
    ya = df.loc[te_all, "label"].to_numpy()
    sel = te[te_all]
    p, y = pa[sel], ya[sel]
    m = metrics(y, p)
    rec = dict(name=name, params=params, rounds=rounds, n_features=len(cols), fit_s=round(fit_s, 1), clean=clean, **m)
    for mname, mask in (extra_masks or {}).items():
        mm = mask[te_all]
        rec[f"roc_auc_{mname}"] = roc_auc_score(ya[mm], pa[mm])
    with open(log, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(f"{name:45s} {params:7s} n={len(cols):3d} auc={m['roc_auc']:.4f} pr={m['pr_auc']:.4f} "
          f"ll={m['log_loss']:.4f} brier={m['brier']:.4f} fit={fit_s:.0f}s "
          + " ".join(f"{k}={v:.4f}" for k, v in rec.items() if k.startswith("roc_auc_")), flush=True)
    return b, p, rec
