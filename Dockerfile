# memlab for workshops: every lab, the grader and the project's own tests, built.
#   docker build -t memlab .                       (or: make docker)
#   docker run -it --rm -v "$PWD:/memlab" memlab   a shell in your working copy
# Add --privileged for the cgroup, OOM and pagemap labs in full. Run modes, what
# each one skips, sizes and troubleshooting: docs/docker.md.
FROM debian:bookworm-slim

# Debian's packages for the purposes build, grade and test, read from deps/packages.txt
# (the one list, which `make`'s dependency step reads too). Not vm: no QEMU in here;
# not optional: without them their checks skip, with the reason.
# Not perf: no lab needs it, and linux-perf with its perl modules would add 82 MiB,
# a quarter of the image (apt-get install linux-perf as root if you want it).
COPY deps/packages.txt deps/install /opt/memlab/deps/
RUN apt-get update \
 && apt-get install -y --no-install-recommends $(/opt/memlab/deps/install --list build grade test) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# The user the labs run as; deps/container-entrypoint gives it the uid of a mounted
# working copy, and keeps root only for a privileged container.
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash memlab \
 && install -d -o memlab -g memlab /memlab && chown memlab:memlab /opt/memlab

COPY --chown=memlab:memlab . /opt/memlab/
USER memlab
WORKDIR /opt/memlab
RUN rm -rf build dist && make build

# The entry point starts as root only to set up /memlab and memlab's uid, then runs
# the command (bash) as memlab; as root only in a --privileged container.
USER root

ENV LANG=C.UTF-8 MEMLAB_SKIP_VM=1
WORKDIR /memlab
ENTRYPOINT ["/opt/memlab/deps/container-entrypoint"]
CMD ["bash"]
