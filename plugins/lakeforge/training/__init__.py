"""Training on Spark, MLflow tracking and the champion/challenger registry gate."""
