"""A compact set: the 40 / 60 features with the most gain in the final model (gain measured on the training fit)."""
from common import *
df = load()
imp = pd.read_csv(OUT + "/importance_gain.csv", index_col=0).iloc[:, 0]
for k in (40, 60):
    cols = list(imp.index[:k])
    fit_eval(df, cols, name=f"compact: top-{k} by gain")
    print(k, cols)
