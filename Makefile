# inpaint: install, test and the face pipeline. Variables can be set on the command line:
#   make train DATASET=faces RUN=runs/mine CONFIG=configs/dcgan64.toml
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPAINT := $(BIN)/inpaint

PHOTOS ?= ../shared/data/raw-photos
ALIGNED ?= aligned
DATASET ?= ../shared/data/celeba-train
CONFIG ?= configs/dcgan64.toml
RUN ?= runs/celeba64
EPOCHS ?= 25
IMAGES ?= data/samples
MASK ?= center
OUT ?= out
GIF ?= $(OUT)/completion.gif

.PHONY: install test test-all lint align train complete gif demo pretrained benchmark clean

# A stamp file so `make test` re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,align]"
	touch $@

install: $(VENV)/.installed

test: install  ## the fast suite (a few minutes on 2 CPU cores)
	$(BIN)/python -m pytest -q

test-all: install  ## everything, including slow tests on ../shared/data
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check inpaint tests scripts

align: install  ## photos -> aligned 64x64 faces
	$(INPAINT) align $(PHOTOS) --out-dir $(ALIGNED)

train: install  ## train (or resume) a DCGAN
	$(INPAINT) train --dataset $(DATASET) --out $(RUN) --config $(CONFIG) --epochs $(EPOCHS)

complete: install  ## fill the holes of IMAGES with the model of RUN
	$(INPAINT) complete $(IMAGES) --outDir $(OUT) --model $(RUN) --mask-type $(MASK)

gif: complete  ## animate the completion
	$(INPAINT) make-gif $(OUT) -o $(GIF)

demo: install  ## complete data/samples with the shipped model: out/demo/{sheet.png,completion.gif}
	$(INPAINT) complete data/samples/*.png --outDir out/demo
	$(INPAINT) make-gif out/demo -o out/demo/completion.gif --scale 2
	@echo "open out/demo/sheet.png and out/demo/completion.gif"

# Reproduce the shipped model: align CelebA, train, pick the best checkpoint, package it.
pretrained: install
	$(INPAINT) align $(DATASET) --out-dir aligned/celeba-train --workers 2 -q
	$(INPAINT) align ../shared/data/celeba-val --out-dir aligned/celeba-val -q
	$(INPAINT) train --dataset aligned/celeba-train --out runs/celeba64 --config configs/celeba64.toml \
		--set train.keep_checkpoints=25 --set train.checkpoint_every=300
	$(BIN)/python scripts/pretrained.py select runs/celeba64 --images aligned/celeba-val
	@echo "then: $(BIN)/python scripts/pretrained.py package runs/celeba64 --step <best step>"

benchmark: install
	$(BIN)/python scripts/benchmark.py all

clean:
	rm -rf $(OUT) $(ALIGNED) .pytest_cache
