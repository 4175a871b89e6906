# Two commands do all the set-up on a fresh clone:
#   make demo   synthetic drone flight -> SLAM -> summary
#   make test   the test suite
# Both create the local virtual environment .venv on first use; `make test` also creates the
# ROS 2 test environment .venv-ros (real rclpy for the node's tests; tools/make_ros_test_env.sh:
# without network or compiler it records why, and those tests skip).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ROS_VENV ?= .venv-ros
ROS_STAMP := $(ROS_VENV)/.installed

.PHONY: demo test bench bench-seeds bench-scenarios fuzz venv ros-venv clean

venv: $(STAMP)

$(STAMP): requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Never fails the test command: when it cannot be made, the stamp is missing (retried next
# time) and $(ROS_VENV)/UNAVAILABLE says why.
ros-venv: $(ROS_STAMP)

$(ROS_STAMP): $(STAMP) requirements-ros-test.txt tools/make_ros_test_env.sh \
		tools/ros_test_env/TFMessage.msg setup.py
	ROS_VENV=$(abspath $(ROS_VENV)) MAIN_VENV=$(abspath $(VENV)) \
		bash tools/make_ros_test_env.sh $(PYTHON)

demo: $(STAMP)
	$(VENV)/bin/vssm-demo

test: $(STAMP) $(ROS_STAMP)
	VSSM_ROS_VENV=$(abspath $(ROS_VENV)) $(PY) -m pytest -q test

bench: $(STAMP)
	$(VENV)/bin/vssm-bench

# The demo on three synthetic flights (about 4 minutes): gate map/tracking changes on it.
bench-seeds: $(STAMP)
	$(PY) tools/seed_sweep.py --seeds 0 1 2

# The default config on scenario flights it was not tuned on (docs/scenarios.md; about
# 35 minutes single-threaded). SCENARIO_ARGS='--split tune --max-frames 150' for a quick look.
bench-scenarios: $(STAMP)
	$(PY) tools/scenarios.py $(SCENARIO_ARGS)

# Fuzz campaign (docs/faults.md; about a minute): 10,000 adversarial messages through the
# node's intake and conversion, 0 crashes and 0 hangs, then a clean flight after reset must
# give the ATE of a fresh process. FUZZ_ARGS='--messages 50000 --seed 1' for a longer one.
fuzz: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) tools/fuzz.py $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) $(ROS_VENV) .cache build *.egg-info
