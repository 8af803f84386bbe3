"""Quality gates: Great Expectations suites run on a Spark job's output before it is published."""
