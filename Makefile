# memlab - Linux memory-management labs with an auto-grader.
# `make help` lists the targets. Everything is built under $(BUILD).

BUILD    ?= build
# where the lab sources are read from (the grader points this at a submission)
LABS_SRC ?= labs
CC       ?= gcc
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wno-unused-parameter
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -Icommon

# A lab is a folder labs/<lab>/ holding lab.toml; nothing else lists them.
# LABS="cow faults" on the command line limits `make grade` to those.
ALL_LABS := $(sort $(patsubst labs/%/lab.toml,%,$(wildcard labs/*/lab.toml)))
# (read when a lab is linked, not each time make starts; the grader passes LDLIBS_<lab>=
# itself, so that compiling a submission starts no sed)
lab_ldlibs = $(if $(filter undefined,$(origin LDLIBS_$(1))),$(shell sed -n 's/^ldlibs *= *"\(.*\)".*/\1/p' labs/$(1)/lab.toml),$(LDLIBS_$(1)))

COMMON_SRC := $(filter-out common/tests/%,$(wildcard common/*.c))
COMMON_OBJ := $(COMMON_SRC:common/%.c=$(BUILD)/common/%.o)
LIBMEMLAB  := $(BUILD)/libmemlab.a
LAB_BINS   := $(foreach l,$(ALL_LABS),$(BUILD)/labs/$(l)/$(l))

# Debian's interpreter first (see deps/find-python); resolved when used.
PY      = $$(deps/find-python)
PY_TEST = $$(deps/find-python pytest)
DEPS    = $(BUILD)/.deps-$(1)
SEED   ?=
VM     ?=
GRADER_ARGS = $(if $(SEED),--seed $(SEED)) $(if $(VM),--vm)

.PHONY: all build help grade doctor handout submit gradescope test test-c test-py clean deps $(addprefix lab-,$(ALL_LABS))
.DEFAULT_GOAL := help

all build: $(LIBMEMLAB) $(LAB_BINS)

help:
	@echo "memlab: Linux memory-management labs"
	@echo
	@echo "Labs (run one, then read its verdicts):"
	@$(foreach l,$(ALL_LABS),printf '  make lab-%-12s %s\n' '$(l)' "$$(sed -n 's/^title *= *"\(.*\)"/\1/p' labs/$(l)/lab.toml | head -n1)";)
	@echo
	@echo "Targets:"
	@echo "  make grade           run every lab, print the scores, write $(BUILD)/results.json"
	@echo "  make batch SUBMISSIONS=<dir> OUT=<dir> [JOBS=n] [LABS=..] [FORCE=1] [UNSAFE=1]"
	@echo "                       grade a whole class: OUT/gradebook.csv, junit.xml, <student>/ (docs/batch.md)"
	@echo "  make test            the project's own tests (C unit tests, grader tests, end to end)"
	@echo "  make doctor          what this machine supports, and what each lab will skip here"
	@echo "  make handout         the student version in dist/handout/ (solutions stripped)"
	@echo "  make submit          (student handout) pack the lab files you changed into submission.tar.gz"
	@echo "  make gradescope      the Gradescope autograder: dist/gradescope-autograder.zip (LABS= limits it)"
	@echo "  make docker          the workshop image \"memlab\" (Docker, else podman): docs/docker.md"
	@echo "  make build           compile the helper library and every lab"
	@echo "  make clean           remove $(BUILD)/ and dist/"
	@echo
	@echo "Options: SEED=n repeats a graded run's parameters; LABS=\"cow faults\" limits make grade."

# ---- dependencies: installed by apt-get when root, else the command is printed
$(BUILD)/.deps-%: deps/packages.txt
	@deps/install $(subst +, ,$*)
	@mkdir -p $(@D) && touch $@

.PRECIOUS: $(BUILD)/.deps-%
deps: $(call DEPS,build+grade+test)

# ---- C: the helper library, then one binary per lab
# The compiler and flags the library was built with: its objects and the labs are
# rebuilt when they change (make reads this file, and writes it only when it differs).
BUILT_WITH  := $(CC) $(ALL_CFLAGS)
FLAGS_STAMP := $(BUILD)/common/.flags
ifneq ($(file <$(FLAGS_STAMP)),$(BUILT_WITH))
$(FLAGS_STAMP): stale-flags
endif
.PHONY: stale-flags
$(FLAGS_STAMP): | $(BUILD)/common/
	$(file >$@,$(BUILT_WITH))@:
$(BUILD)/common/:
	@mkdir -p $@

$(BUILD)/common/%.o: common/%.c common/memlab.h $(FLAGS_STAMP) | $(call DEPS,build)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBMEMLAB): $(COMMON_OBJ)
	@rm -f $@
	ar rcs $@ $^

# (BUILD_MARK=<word>: a line "<word> <lab>" before each lab's compilation, for the
# grader, which compiles all of a student's labs in one make and splits the output)
define LAB_RULE
$(BUILD)/labs/$(1)/$(1): $(LABS_SRC)/$(1)/$(1).c $(LIBMEMLAB) common/memlab.h $(FLAGS_STAMP) | $(BUILD)/labs/$(1)/
	$$(if $$(BUILD_MARK),$$(info $$(BUILD_MARK) $(1)))$$(CC) $$(ALL_CFLAGS) $$< -o $$@ $(LIBMEMLAB) $$(call lab_ldlibs,$(1)) -lm
endef
$(foreach l,$(ALL_LABS),$(eval $(call LAB_RULE,$(l))))
$(BUILD)/labs/%/:
	@mkdir -p $@

# ---- running and grading (the grader builds what it runs)
$(addprefix lab-,$(ALL_LABS)): lab-%: $(call DEPS,build+grade)
	@$(PY) -m grader run $* $(GRADER_ARGS)

grade: $(call DEPS,build+grade)
	@$(PY) -m grader grade $(GRADER_ARGS) $(if $(LABS),--labs "$(LABS)")

doctor: $(call DEPS,build+grade)
	@$(PY) -m grader doctor

handout: $(call DEPS,build+grade)
	@$(PY) -m grader handout --out dist/handout

submit: $(call DEPS,build+grade)
	@$(PY) -m grader submit

gradescope: $(call DEPS,grade)
	@$(PY) -m grader gradescope --out dist/gradescope-autograder.zip $(if $(LABS),--labs "$(LABS)")

# ---- a whole class (docs/batch.md); paths are relative to this folder
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
.PHONY: batch
ifneq ($(filter batch,$(MAKECMDGOALS)),)
ifeq ($(strip $(SUBMISSIONS)),)
$(error make batch needs SUBMISSIONS=<folder>: one folder, .tar.gz, .tgz or .zip per student (and OUT=<folder> for the results); see docs/batch.md)
endif
ifeq ($(strip $(OUT)),)
$(error make batch needs OUT=<folder>: where gradebook.csv, junit.xml and one folder per student are written; see docs/batch.md)
endif
endif
batch: $(call DEPS,build+grade)
	@$(PY) -m grader batch "$(SUBMISSIONS)" "$(OUT)" --jobs $(JOBS) $(if $(LABS),--labs "$(LABS)") \
	  $(if $(filter-out 0,$(FORCE)),--force) $(if $(filter-out 0,$(UNSAFE)),--unsafe) \
	  $(if $(SEED),--seed $(SEED)) $(if $(STUDENTS),--only "$(STUDENTS)") $(if $(filter-out 0,$(AUTOLAB)),--autolab)

# ---- the workshop image (docs/docker.md): docker build, or podman where no engine answers
.PHONY: docker
docker:
	@deps/container-build

# ---- the project's own tests
TEST_C_BIN := $(BUILD)/tests/test_common

$(TEST_C_BIN): common/tests/test_common.c $(LIBMEMLAB) | $(call DEPS,build+grade+test)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(LIBMEMLAB) $$(pkg-config --cflags --libs check)

test-c: $(TEST_C_BIN)
	@cd common/tests && ../../$(TEST_C_BIN)

test-py: $(call DEPS,build+grade+test) build
	@if [ ! -d tests ]; then echo "memlab: the project's own tests are not part of the student handout"; \
	else $(PY_TEST) -m pytest -q tests $(PYTEST_ARGS); fi

test: test-c test-py

clean:
	rm -rf $(BUILD) dist
