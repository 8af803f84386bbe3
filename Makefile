# lakeforge: `make demo` and `make test` do all set-up on a fresh machine (Python 3.11, Java 17).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
HDFS_MODULE := tools/hdfs-mini
HDFS_CLASSPATH := $(HDFS_MODULE)/target/classpath.txt
HDFS_SOURCES := $(HDFS_MODULE)/pom.xml $(shell find $(HDFS_MODULE)/src -type f 2>/dev/null)

.PHONY: help system install spark-cds hdfs-jars test demo demo-hdfs bench audit lock settings airflow-env up down status clean

help:
	@echo "make up         start Airflow (UI, scheduler), MLflow and PostgreSQL on 127.0.0.1; prints URLs and logins"
	@echo "make status     URLs, each service up/down, last run per DAG, newest day per layer, champion"
	@echo "make down       stop what make up started (by PID); the data stays, make up resumes"
	@echo "make demo       January 2013 through Airflow: ingest, transform (quality-gated), train + register in MLflow"
	@echo "make demo-hdfs  the same into a real HDFS started for the run"
	@echo "make test       install everything the tests need and run them (HDFS included)"
	@echo "make bench      benchmarks -> bench/results/*.json"
	@echo "make audit      vulnerability audit of requirements.txt (needs the OSV service or an OSV dump)"
	@echo "make lock       re-resolve requirements.in into the pinned requirements.txt"

system:
	@tools/bootstrap-system.sh

# The venv is rebuilt from the lock whenever the lock changes: what CI tested is what installs.
# Its bytecode is compiled once here (~20 s on 2 cores): where PYTHONDONTWRITEBYTECODE is set (as
# on CI's machine) nothing else would write it, and every process (each Airflow task, Spark's
# Python workers, each job) would compile the sources of what it imports again: `import mlflow`
# took 4.7 s that way, 1.4 s compiled.
$(VENV)/.installed: requirements.txt pyproject.toml | system
	$(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install -q "uv==$$(sed -n 's/^uv==//p' requirements.txt)"
	$(UV) pip sync -q --compile-bytecode --python $(PY) requirements.txt
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

# lakeforge's own modules too (only those changed since are compiled again).
install: $(VENV)/.installed
	@$(PY) -m compileall -q -j 0 plugins spark_jobs dags bench

# lakeforge's file:// file system for Spark (lakeforge.local_fs: javac, ~2 s; no chmod process per
# directory written), then the Spark driver's class-data-sharing archive, recorded once per JDK +
# pyspark + that jar (~30 s): every Spark JVM after that starts ~2.5 s faster (lakeforge.spark_cds).
spark-cds: install
	@$(PY) -m lakeforge.local_fs
	@$(PY) -m lakeforge.spark_cds

$(HDFS_CLASSPATH): $(HDFS_SOURCES) | system
	mvn -q -B -f $(HDFS_MODULE)/pom.xml package dependency:build-classpath -Dmdep.outputFile=target/classpath.txt

hdfs-jars: $(HDFS_CLASSPATH)

# Two pytest workers (pytest-xdist), a test module each at a time: most modules wait on a JVM,
# a server or a scheduler more than they compute, so two of them share the 2 cores well. Each
# worker has its own session home and starts the services its modules need.
TEST_WORKERS ?= 2
test: install hdfs-jars spark-cds
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

demo: install spark-cds
	$(PY) -m lakeforge.pipelines.nycflights.demo --start 2013-01-01 --end 2013-01-31

# Its own Airflow DB, MLflow registry and landing in <LAKEFORGE_HOME>/demo-hdfs/ (.lakeforge/demo-hdfs/), apart from
# `make demo`'s (an HDFS-lake model is never compared with a file-lake champion); HDFS lives for the run.
demo-hdfs: install hdfs-jars spark-cds
	$(PY) -m lakeforge.pipelines.nycflights.demo --start 2013-01-01 --end 2013-01-31 --hdfs

# Each writes bench/results/<name>.json; the wall times are the results' own, on 2 cores. Ingest
# throughput (~1 min), Spark vs DuckDB on the year at 20x (10 min, 6.7M flights), a daily run as its
# own application vs through a Spark Connect server (2.5 min), the quality gates' share of the
# transform (2 min), training vs LightGBM (21 min), what scoring costs (2 months at x20, 25 min; the
# x20 lakes are cached under /tmp), the year through the scheduler (make up's services in a fresh
# home: 10 min + 45 s of start-up).
bench: install hdfs-jars spark-cds
	$(PY) -m bench.ingest_throughput
	$(PY) -m bench.transform_bench
	$(PY) -m bench.connect_bench
	$(PY) -m bench.quality_bench
	$(PY) -m bench.train_bench --ablation
	$(PY) -m bench.score_cost --months 2
	$(PY) -m bench.e2e_year --start 2013-01-01 --end 2013-12-31 --timeout-min 35

# Vulnerability audit of requirements.txt (tools/audit-deps): needs the OSV/PyPI vulnerability
# service or an OSV dump (--osv-db); where neither is reachable it fails and says so, never "clean".
audit: install
	$(PY) tools/audit-deps

lock: install
	$(UV) pip compile -q --python-version 3.11 requirements.in -o requirements.txt

settings: install
	@$(PY) -m lakeforge.settings

# Export Airflow's embedded-mode configuration into a shell: eval "$$(make -s airflow-env)"
airflow-env: install
	@$(PY) -m lakeforge.orchestration.airflow_env

# The platform as people use it (lakeforge.stack): PostgreSQL, MLflow with logins, Airflow's api-server,
# scheduler, dag-processor and triggerer under LAKEFORGE_HOME (default .lakeforge/), every socket on 127.0.0.1.
up: install spark-cds
	@$(PY) -m lakeforge.stack up

status: install
	@$(PY) -m lakeforge.stack status

down: install
	@$(PY) -m lakeforge.stack down

clean:
	-@[ -x $(PY) ] && $(PY) -m lakeforge.stack down
	rm -rf $(VENV) $(HDFS_MODULE)/target .lakeforge
