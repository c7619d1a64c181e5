"""State layout: the codes, slots and table rows that every backend and the host agree on.

Plain integers and name tuples only (no Numba, no arrays): the rules
(:mod:`kernels.rules`) and drivers read them as compile-time constants, the
host (:mod:`abm`) builds and reads the arrays with them.

Arrays
------
``cell[i, j]`` (uint8)
    The cell kind at a site: one of ``EMPTY, BLAST, BCELL, NORMAL, STROMA, CART``.
``tissue[i, j]`` (uint8)
    ``MARROW``, ``PERIVASCULAR`` (marrow next to a sinusoid, where CAR-T
    cells enter and leave the window) and ``NICHE`` (next to a stromal niche
    cell) hold cells; ``BONE`` and ``SINUSOID`` never do.
``traits[i, j, :]`` (uint16)
    Per-cell attributes stored at the cell's site, moved and copied with it:
    ``ANTIGEN`` (CD19 and CD22 levels, packed, see below), ``STATE`` (CAR-T state; for a
    blast its escape route ``ROUTE``, issue 28), ``TARGET``
    (direction of the engaged target, 1-8, or 0), ``STIM`` (antigen
    engagements), ``KILLS``, ``DIVS`` (divisions in the lineage), ``TIMER``
    (steps of activation left; for a blast or B cell ``DEFICIT``, the antigen levels
    that trogocytosis stripped from it, packed like ``ANTIGEN``), ``ACTED`` (:func:`kernels.rules.stamp` of the
    last step the cell acted in; ``UNVISITED`` = 0 for a cell that has not
    acted yet), ``PHENO`` (CAR-T phenotype).
``fields[f, vi, vj]`` (int64)
    Fixed-point cytokine / chemokine fields on a coarse grid (see
    :mod:`kernels.diffusion`).
``events[N_EVENTS]`` (int64)
    Cumulative event counts (see Events).
``kind_rates``, ``antigen_rates``, ``rates``, ``field_rates`` (int64)
    Rate tables, indexed by the ``KR_*``, ``AR_*``, ``R_*`` and ``F_*`` / ``FR_*`` rows below.
``traffic[N_TRAFFIC]`` (int64)
    One step's blood traffic (:class:`kernels.Traffic` packs it), indexed by the ``TR_*`` slots.

Antigen levels
    An antigen density is stored as a level ``0..255``; 0 is antigen-negative
    and level ``L >= 1`` stands for ``10 ** (1 + 4 * (L - 1) / 254)`` molecules
    per cell (10 to 100,000, log-spaced, about 3.7 % apart). Kill and
    attachment probabilities are looked up per level from tables computed once
    on the host, so no backend evaluates a transcendental function.

    Two antigens share the one uint16 ``ANTIGEN`` slot (a third trait slot
    would cost 2 bytes a site): the low byte is the CD19 level, the high byte
    the CD22 level on the same scale (:func:`kernels.rules.cd19_level`,
    :func:`kernels.rules.cd22_level`, :func:`kernels.rules.pack`). A cell
    without CD22 has a high byte of 0, so its ``ANTIGEN`` value is its CD19
    level, as the ``CD19`` slot held before CD22 existed. The CAR's target
    choice is ``rates[R_TARGET_MODE]`` (:data:`TARGET_CD19`,
    :data:`TARGET_CD22`, :data:`TARGET_BOTH`); every rule reads a target's
    antigen through :func:`kernels.rules.target_level`.

Events
    Each action returns at most one event code (0 = none): ``BORN + kind``,
    ``DIED + kind`` (natural or activation-induced death), ``KILLED + kind`` (by a
    CAR-T cell), ``ENTERED`` / ``EXITED`` (CAR-T traffic through sinusoids),
    ``BCELL_MADE`` (B lymphopoiesis: an other-hematopoietic cell becomes a B
    cell), ``EXHAUSTED`` (a CAR-T cell exhausts; no change of kind), ``SEEDED``
    (a reservoir blast enters) and ``DISPLACED + kind`` (a dividing blast's
    daughter takes the site of a normal cell of that kind, which leaves). The
    drivers add them to counters; counts per kind then balance exactly:
    ``count = initial + born + entered - died - killed - exited - displaced``
    (+/- B cells made; blasts also gain the seeded and every displacement).
"""

# Cell kinds.
EMPTY = 0
BLAST = 1
BCELL = 2
NORMAL = 3
STROMA = 4
CART = 5
N_KINDS = 6
KIND_NAMES = ("empty", "blast", "bcell", "normal", "stroma", "cart")

# Tissue codes. Codes up to OCCUPIABLE hold cells.
MARROW = 0
PERIVASCULAR = 1  # next to a sinusoid: CAR-T cells enter and leave here
NICHE = 2  # next to a stromal niche cell: targets here are protected
BONE = 3
SINUSOID = 4
OCCUPIABLE = NICHE
TISSUE_NAMES = ("marrow", "perivascular", "niche", "bone", "sinusoid")

# Trait slots.
ANTIGEN = 0  # CD19 level (low byte) and CD22 level (high byte); see kernels.rules.pack
STATE = 1
TARGET = 2
STIM = 3
KILLS = 4
DIVS = 5
TIMER = 6
ACTED = 7
PHENO = 8
N_TRAITS = 9
TRAIT_NAMES = ("antigen", "state", "target", "stim", "kills", "divs", "timer", "acted", "pheno")
TRAIT_MAX = 0xFFFF
UNVISITED = 0  # ACTED of a cell that has not acted yet; kernels.rules.stamp is never 0

# CAR-T states (the STATE trait) and phenotypes (the PHENO trait).
RESTING = 0
ACTIVE = 1
EXHAUSTED = 2
EFFECTOR = 0
MEMORY = 1

# Routes of escape from the product's target (the STATE trait of a blast, inherited at division; issue 28).
ROUTE = STATE  # a blast's STATE slot holds its route (CAR-T cells use it for their state)
ROUTE_NONE = 0  # carries the target, or lost it by no modelled route
ROUTE_PREEXISTING = 1  # target-negative before infusion (a CD19-negative or exon-2-skipped subclone)
ROUTE_MUTATION = 2  # lost the target in a division (inactivating mutation; Orlando 2018)
ROUTE_LINEAGE = 3  # switched to the myeloid lineage in a division: neither CD19 nor CD22 (Gardner 2016)
ROUTE_DOWNREGULATION = 4  # carries less of the target than its genes make: stripped by trogocytosis (Hamieh 2019)
ROUTE_MASKING = 5  # carries the CAR itself, which masks the target in cis (transduced in manufacturing; Ruella 2018)
N_ROUTES = 6
ROUTE_NAMES = ("none", "preexisting", "mutation", "lineage", "downregulation", "masking")
DEFICIT = TIMER  # a blast's or B cell's TIMER slot holds the levels trogocytosis took (CD19 low byte, CD22 high)

# Antigen levels (one byte per antigen in the ANTIGEN slot).
N_LEVELS = 256
LEVEL_MASK = 0xFF
CD22_SHIFT = 8

# CAR target choice (rates[R_TARGET_MODE]).
TARGET_CD19 = 0
TARGET_CD22 = 1
TARGET_BOTH = 2  # tandem / bispecific OR-gate CAR: either antigen makes a target
TARGET_NAMES = ("CD19", "CD22", "CD19/CD22")

# Events: codes are offsets + kind.
EV_NONE = 0
EV_BORN = 0
EV_DIED = N_KINDS
EV_KILLED = 2 * N_KINDS
EV_ENTERED = 3 * N_KINDS
EV_EXITED = 3 * N_KINDS + 1
EV_BCELL_MADE = 3 * N_KINDS + 2  # an other-hematopoietic cell became a B cell (NORMAL -1, BCELL +1)
EV_EXHAUSTED = 3 * N_KINDS + 3  # a CAR-T cell exhausted (no change of kind)
EV_SEEDED = 3 * N_KINDS + 4  # a blast from the body's reservoir entered through a perivascular site
EV_DISPLACED = 3 * N_KINDS + 5  # + kind: a dividing blast's daughter took the site of a cell of that kind
N_EVENTS = 4 * N_KINDS + 5

# Random-number purposes (the 4th key of kernels.rng.draw).
P_ORDER = 1
P_DIE = 2  # also decides division: act_tissue_cell makes one draw for both
P_PLACE = 4
P_NOISE = 5
P_ATTACH = 6
P_TARGET = 7
P_KILL = 8
P_DETACH = 9
P_PROLIF = 10
P_MOVE = 11
P_DIR = 12
P_CHEMO = 13
P_SWAP = 14
P_ENTER = 15
P_EXIT = 16
P_MEMORY = 17
P_AICD = 18
P_EXHAUST = 19
P_LOSS = 20
P_PHENO = 21
P_LOSS_CD22 = 22  # CD22 loss at a CD22+ blast's division
P_NOISE_CD22 = 23  # CD22 level change at a CD22+ blast's division
P_SEED = 24  # a reservoir blast enters an empty perivascular site
P_SEED_LEVEL = 25  # its CD19 (bits 0-7) and CD22 (bits 8-15) quantiles
P_SEED_NEG = 26  # whether it lacks the product's target
P_DISPLACE = 27  # whether a blast without a free neighbour displaces a normal hematopoietic neighbour
P_GROUP = 28  # how many sites of a turnover group are candidates this step (kernels.turnover)
P_SLOT = 29  # P_SLOT + r, r < MAX_CANDIDATES: the r-th draw choosing which sites they are
P_SWITCH = 38  # whether a blast daughter switches lineage (after the P_SLOT range)
P_SEED_ROUTE = 39  # the escape route of a target-negative reservoir blast entering the window
P_TROG = 40  # whether an engagement strips one level more than rates[R_TROG_LEVELS] (the fractional part)
P_RECOVER = 41  # whether a stripped blast or B cell re-expresses one level of each stripped antigen
P_SHED = 42  # whether a CAR-T cell loses one level of the antigen it took by trogocytosis

# Rows of the per-kind rate table ``kind_rates[row, kind]`` (thresholds).
KR_DIE = 0
KR_DIVIDE = 1
KR_CONVERT = 2  # NORMAL only: becomes a B cell (B lymphopoiesis)
N_KIND_RATES = 3

# Rows of the per-level antigen table ``antigen_rates[row, level]`` (thresholds).
AR_ATTACH = 0
AR_KILL = 1
AR_ATTACH_NICHE = 2  # the same for a target on a NICHE site (protected)
AR_KILL_NICHE = 3
N_ANTIGEN_RATES = 4

# Slots of the scalar rate vector ``rates`` (thresholds unless noted).
R_MOVE = 0  # CAR-T migration step probability
R_SWAP = 1  # probability a blocked move swaps with a non-T cell
R_CHEMO = 2  # probability a move follows the chemokine gradient
R_DETACH = 3  # per-step detachment from a target not killed
R_PROLIF = 4  # per-step division probability of an ACTIVE CAR-T cell
R_MAX_DIVS = 5  # integer: divisions allowed per lineage
R_ACTIVE_STEPS = 6  # integer: steps a stimulated CAR-T cell stays ACTIVE
R_EXIT = 7  # per-step exit through a sinusoid for a free CAR-T cell
R_EXHAUST_STIM = 8  # integer: engagements after which a CAR-T cell exhausts or dies
R_EXHAUST_DIE = 9  # probability that reaching R_EXHAUST_STIM kills instead of exhausting
R_AICD = 10  # activation-induced death per engagement
R_MEMORY = 11  # per-step conversion of a resting effector into a memory cell
R_MEMORY_DIE = 12  # per-step death of a memory cell
R_LOSS = 13  # CD19 loss per CD19+ blast division
R_BCELL_LEVEL = 14  # integer: CD19 level of a new B cell
R_TARGET_MODE = 15  # integer: TARGET_CD19, TARGET_CD22 or TARGET_BOTH
R_LOSS_CD22 = 16  # CD22 loss per CD22+ blast division
R_BCELL_CD22_LEVEL = 17  # integer: CD22 level of a new B cell
R_DISPLACE = 18  # probability a dividing blast without a free neighbour displaces a NORMAL or BCELL neighbour
R_SWITCH = 19  # lineage switch per blast division (the daughter loses CD19 and CD22)
R_TROG_LEVELS = 20  # integer: target levels an engagement strips (trogocytosis; 0: none)...
R_TROG_FRAC = 21  # ... and the probability of one level more
R_TROG_OFFSET = 22  # integer: levels below the target's level that the stripped antigen gives the CAR-T cell
R_RECOVER = 23  # per-step re-expression of one level by a stripped cell (0: stripped cells are not visited)
R_SHED = 24  # per-step loss of one level of the antigen a CAR-T cell took
N_RATES = 25

# Rows of the field table ``field_rates[field, row]`` (integers, see kernels.diffusion).
F_IL6 = 0
F_CXCL12 = 1
N_FIELDS = 2
FIELD_NAMES = ("il6", "cxcl12")
FR_SECRETE_ACTIVE_CART = 0
FR_SECRETE_STROMA = 1
FR_DIFFUSE = 2
FR_DECAY = 3
FR_SUBSTEPS = 4
N_FIELD_RATES = 5

# Slots of the per-step blood-traffic vector ``traffic[N_TRAFFIC]`` (int64; kernels.Traffic packs it, and
# TRAFFIC_NAMES[slot] is the Traffic field each slot holds). Quotas are expected entries this step times 2**32,
# thresholds probabilities times 2**32.
TR_ENTER_QUOTA = 0  # CAR-T cells entering the window, spread over the empty perivascular sites
TR_EXIT_THRESHOLD = 1  # per-step exit of a free CAR-T cell on a perivascular site
TR_MEMORY_THRESHOLD = 2  # an entering CAR-T cell is a memory cell
TR_SEED_QUOTA = 3  # reservoir blasts entering the window, spread like the CAR-T quota
TR_NEGATIVE_THRESHOLD = 4  # an entering reservoir blast lacks the product's target
TR_PREEXISTING_THRESHOLD = 5  # a target-negative entering blast is of the pre-existing route...
TR_MUTATION_THRESHOLD = 6  # ... or (cumulative) of the mutation route...
TR_LINEAGE_THRESHOLD = 7  # ... or (cumulative) of the lineage switch; the rest carry the CAR (masking)
N_TRAFFIC = 8

# Slots of the turnover vector ``turnover[N_TURNOVER]`` (int64), which kernels.turnover.table derives from the
# kind rates: the candidate probability of a tissue site per step (times 2**32), the group size, and the
# cumulative distribution (times 2**32) of the number of candidates in a group, for 0..MAX_CANDIDATES.
MAX_CANDIDATES = 8
TV_BOUND = 0
TV_GROUP = 1
TV_CDF = 2
N_TURNOVER = TV_CDF + MAX_CANDIDATES + 1
TRAFFIC_NAMES = ("enter_quota", "exit_threshold", "memory_threshold", "seed_quota", "negative_threshold",
                 "preexisting_threshold", "mutation_threshold", "lineage_threshold")
