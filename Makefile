# inpaint: install, test and the face pipeline. Variables can be set on the command line:
#   make align PHOTOS=my-photos ALIGNED=faces
#   make train DATASET=faces RUN=runs/mine CONFIG=configs/dcgan64.toml
#   make complete IMAGES=faces MODEL=runs/mine/model
# Every target works in a fresh clone, or stops at once saying what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPAINT := $(BIN)/inpaint

SHARED ?= ../shared/data
PHOTOS ?= data/photos
ALIGNED ?= aligned
DATASET ?= $(ALIGNED)
CONFIG ?= configs/dcgan64.toml
RUN ?= runs/mine
EPOCHS ?= 25
IMAGES ?= data/samples
MODEL ?=
MASK ?= center
OUT ?= out
GIF ?= $(OUT)/completion.gif

# $(call need,PATH,what to do): stop with a message unless PATH exists.
need = @test -e "$(1)" || { echo "make $@: $(1) does not exist; $(2)" >&2; exit 1; }

.PHONY: install test test-all lint align train complete gif demo pretrained encoder benchmark clean

# A stamp file so `make test` re-installs only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,align,serve]"
	touch $@

install: $(VENV)/.installed

test: install  ## the fast suite (a few minutes on 2 CPU cores)
	$(BIN)/python -m pytest -q

test-all: install  ## everything, including slow tests on ../shared/data
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check inpaint tests scripts

align: install  ## PHOTOS -> aligned 64x64 faces in ALIGNED
	$(call need,$(PHOTOS),set PHOTOS=<photos: files or a folder>)
	$(INPAINT) align $(PHOTOS) -o $(ALIGNED)

train: install  ## train (or resume) a DCGAN on DATASET into RUN
	$(call need,$(DATASET),set DATASET=<folder of aligned faces>: make align PHOTOS=<photos> makes one)
	$(INPAINT) train --dataset $(DATASET) -o $(RUN) --config $(CONFIG) --epochs $(EPOCHS)

complete: install  ## fill the holes of IMAGES with MODEL (default: the shipped model)
	$(call need,$(IMAGES),set IMAGES=<aligned faces>)
	$(INPAINT) complete $(IMAGES) -o $(OUT) $(if $(MODEL),--model $(MODEL)) --mask-type $(MASK)

gif: complete  ## animate the completion
	$(INPAINT) make-gif $(OUT) -o $(GIF)

demo: install  ## complete data/samples with the shipped model: out/demo/{sheet.png,completion.gif}
	$(INPAINT) complete data/samples/*.png -o out/demo --overwrite
	$(INPAINT) make-gif out/demo -o out/demo/completion.gif --scale 2
	@echo "open out/demo/sheet.png and out/demo/completion.gif"

# Reproduce the shipped model's last run: align CelebA (70,200 faces; $(SHARED) holds celeba-train/,
# celeba-more/ and celeba-val/, see its README), continue training from the shipped weights with
# the weight average and R1 (docs/quality.md), pick the checkpoint by completion quality, package it.
pretrained: install
	$(call need,$(SHARED)/celeba-train,set SHARED=<folder holding CelebA's celeba-train/, celeba-more/ and celeba-val/>)
	$(INPAINT) align $(SHARED)/celeba-train -o aligned/celeba-train --workers 2 -q
	$(INPAINT) align $(SHARED)/celeba-more -o aligned/celeba-more --workers 2 -q
	$(INPAINT) align $(SHARED)/celeba-val -o aligned/celeba-val -q
	$(INPAINT) train --dataset aligned/celeba-train --dataset aligned/celeba-more -o runs/celeba70k \
		--config configs/celeba64.toml --init-from pretrained --epochs 6 --set train.g_steps=1 \
		--set train.lr=1e-4 --set train.r1_gamma=0.003 \
		--set train.keep_checkpoints=100 --set train.checkpoint_every=250
	$(BIN)/python scripts/pretrained.py select runs/celeba70k --images aligned/celeba-val --also-trained
	@echo "then: $(BIN)/python scripts/pretrained.py package runs/celeba70k --step <best step>"
	@echo "or a longer average (docs/quality.md): $(BIN)/python scripts/posthoc_average.py runs/celeba70k --decay 0.9999 --upto <step> --storage float16 -o <dir>"
	@echo "  (with --start <a copy of the model it started from> once inpaint/pretrained holds another)"
	@echo "and: make encoder (a new generator needs its own encoder; packaging drops the old one)"

# Train the encoder that proposes z for the shipped generator and add it to the package.
encoder: install
	$(call need,aligned/celeba-train,run make pretrained first (it aligns CelebA into aligned/))
	$(INPAINT) train-encoder --dataset aligned/celeba-train --dataset aligned/celeba-more \
		-o runs/encoder
	cp runs/encoder/model/encoder.keras runs/encoder/model/model.json inpaint/pretrained/

benchmark: install
	$(BIN)/python scripts/benchmark.py all

clean:
	rm -rf $(OUT) $(ALIGNED) .pytest_cache
