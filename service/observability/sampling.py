"""How often CPU time is measured: a constant the pipeline samples with and the metrics'
help texts quote (its own module: the pipeline must not import Prometheus to know it;
``avmon check`` runs without it)."""

# CPU time (detectors', and the reader's and analyser's per picture) is measured on one
# input in this many (of each kind), the first included, and counted that many times
# over: reading a thread's CPU clock is a system call (~1.3 us), and timing every call of
# every detector took ~0.6 ms per media second at 720p30 (5 % of all the detectors'
# work). 7 is odd and not a multiple of 3, so a detector that works on every other (or
# third) picture is measured on all its phases.
TIME_ONE_IN = 7
