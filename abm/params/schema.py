"""The declared parameters: every key once, with its sourced (uncalibrated) default.

:data:`DECLARED` is the schema as written from the sources; the defaults a run
uses are these merged with ``abm/calibrated.toml`` (:mod:`abm.params.defaults`).
:data:`UNCALIBRATED_DEFAULTS` keeps the sourced values the calibration started
from; ``docs/parameters.md`` is generated from the merged schema
(``python -m abm.params``).
"""

from __future__ import annotations

from typing import Any

from abm.params.param import Param

HARRISON = "Harrison 1962 J Clin Pathol 15:254"
ASSUMPTION = "assumption"
# a mechanism of issue 23 that is declared, tested and off by default: one recalibration turns them on
OFF = "off (0) until the issue-23/28 recalibration, which sets it within the range searched (abm/calibration.py)"

DECLARED: tuple[Param, ...] = (
    # grid -----------------------------------------------------------------
    Param("grid.size", int, 400, "sites per side", 8, 16384,
          description="Side of the square marrow window; one site holds one cell.",
          source="experiments/results/window_convergence: 400 x 400 (4 mm) agrees with 800 x 800 on every "
                 "outcome studied; 200 x 200 agrees too since the chemotaxis calibration (an earlier model needed "
                 "400), so 400 is kept as a margin; the RNG counter holds up to 16384 x 16384"),
    Param("grid.site_um", float, 10.0, "um", 5.0, 30.0,
          description="Edge of a lattice site (about one hematopoietic cell diameter).",
          source="SCIENCE.md: cells ~10 um; PhysiCell/CARTopiaX use 20 um voxels"),
    Param("grid.bone_fraction", float, 0.2, "-", 0.0, 0.6,
          description="Fraction of the window that is trabecular bone (BV/TV); marrow pockets that bone closes off "
                      "from the main marrow space are filled too (~0.5 % of the window more; abm.marrow).",
          source="Glorieux et al. 2000 Bone 26:103 (iliac BV/TV ~20-30 % in children)"),
    Param("grid.sinusoid_fraction", float, 0.05, "-", 0.0, 0.3,
          description="Fraction of the window that is sinusoid lumen (CAR-T entry and exit).",
          source="assumption: marrow sinusoids take ~5 % of marrow area in histological sections"),
    Param("grid.stroma_fraction", float, 0.03, "-", 0.0, 0.3,
          description="Fraction of marrow sites holding stromal niche cells (CXCL12-abundant reticular cells).",
          source="assumption: CAR cells are a few % of marrow cells (Sugiyama 2006 Immunity 25:977)"),
    Param("grid.coarsen", int, 4, "sites per voxel side", 1, 64,
          description="Fields (IL-6, CXCL12) live on voxels of coarsen x coarsen sites.",
          source="choice: 40 um voxels resolve fields whose decay length is >100 um"),
    Param("grid.turnover", str, "group", "-", choices=("group", "site"),
          description="How tissue cells' death, division and conversion are drawn each step: 'group' (one draw per "
                      "group of up to 32 sites, then the candidates) or 'site' (one draw per site, the scheme of "
                      "earlier versions; slower). Equal in distribution (kernels/turnover.py).",
          source="numerical choice; paired comparison in benchmarks/results/turnover-equivalence/README.md"),
    # time -----------------------------------------------------------------
    Param("time.dt_min", float, 2.0, "min", 0.1, 10.0,
          description="Time step; rates are converted to per-step probabilities p = 1 - exp(-rate * dt).",
          source="SCIENCE.md: T cells move a few um/min, a kill takes tens of minutes"),
    Param("time.days", float, 28.0, "d", 0.0, 730.0,
          description="Length of a run.",
          source="day-28 response is the primary endpoint (ELIANA, Maude 2018 NEJM)"),
    Param("time.coupling_min", float, 60.0, "min", 0.1, 1440.0,
          description="How often the body compartment re-reads the window (antigen load, activated CAR-T).",
          source="choice: much shorter than CAR-T expansion (days) and IL-6 kinetics (hours)"),
    Param("time.observe_every_h", float, 6.0, "h", 0.01, 168.0,
          description="Cadence of the DataCollector time series.",
          source="choice: resolves CRS onset (days) and CAR-T kinetics"),
    # patient --------------------------------------------------------------
    Param("patient.weight_kg", float, 30.0, "kg", 3.0, 200.0,
          description="Body weight; sets the dose and the window-to-body scale.",
          source="ELIANA: median age 11 y (3-23)"),
    Param("patient.marrow_blast_fraction", float, 0.68, "-", 0.0, 0.99,
          description="Blasts among nucleated marrow cells before infusion.",
          source="ELIANA/pooled trials: mean ~68 % marrow blasts (SCIENCE.md)"),
    Param("patient.cd19_negative_fraction", float, 0.0, "-", 0.0, 1.0,
          description="Fraction of blasts that are CD19-negative before infusion.",
          source="SCIENCE.md: a small pre-existing CD19-negative fraction is possible"),
    Param("patient.cd19_median_molecules", float, 10000.0, "molecules/cell", 10.0, 100000.0,
          description="Median CD19 density on CD19+ blasts.",
          source="Majzner 2020 Cancer Discov 10:702 (B-ALL CD19 ~10^3-10^4.5 molecules/cell)"),
    Param("patient.cd19_sd_log10", float, 0.3, "log10 molecules", 0.0, 1.5,
          description="Spread of CD19 density between blasts (log-normal).",
          source="assumption: flow cytometry CD19 intensity spans ~1 decade within a sample"),
    Param("patient.cd22_median_molecules", float, 3500.0, "molecules/cell", 10.0, 100000.0,
          description="Median CD22 density on CD22+ blasts (used when CD22 is tracked, see patient.cd22_tracking).",
          source="Haso 2013 Blood 121:1165 (111 B-ALL samples, all CD22+, median 3,500 sites/cell); "
                 "Fry 2018 Nat Med 24:20 (CD22 usually retained after CD19 loss)"),
    Param("patient.cd22_sd_log10", float, 0.3, "log10 molecules", 0.0, 1.5,
          description="Spread of CD22 density between blasts (log-normal, independent of CD19).",
          source="assumption: as for CD19 (patient.cd19_sd_log10); CD22 site density varies widely between "
                 "patients (Haso 2013 Blood 121:1165)"),
    Param("patient.cd22_negative_fraction", float, 0.0, "-", 0.0, 1.0,
          description="Fraction of blasts that are CD22-negative before infusion (drawn independently of CD19).",
          source="Haso 2013 Blood 121:1165 (all 111 B-ALL samples CD22-positive)"),
    Param("patient.cd22_tracking", str, "target", "-", choices=("target", "always"),
          description="When cells carry CD22 levels: 'target' only if product.target includes CD22 (a CD19-only "
                      "run then stores no CD22 and equals, bit for bit, a run from before CD22 was modelled); "
                      "'always' also under a CD19 CAR, to follow the CD22 status of escaping blasts (the CD19 "
                      "dynamics are unchanged: CD22 draws have their own streams).",
          source="choice: keeps CD19-only runs and their regression records unchanged"),
    Param("patient.bcell_fraction", float, 0.1, "-", 0.0, 0.5,
          description="Normal B cells among non-blast nucleated marrow cells.",
          source="assumption: B-lineage cells are ~5-20 % of pediatric marrow cells"),
    Param("patient.marrow_cellularity", float, 0.85, "-", 0.1, 1.0,
          description="Fraction of marrow sites (not bone, sinusoid or stroma) holding a cell.",
          source="assumption: pediatric marrow cellularity ~70-90 %, lower after lymphodepletion"),
    Param("patient.marrow_cells_per_kg", float, 1.05e10, "cells/kg", 5e9, 2e10,
          description="Nucleated marrow cells per kg body weight (sets the window-to-body scale).",
          source=HARRISON),
    Param("patient.kmt2a_rearranged", bool, False, "-",
          description="Whether the leukemia carries a KMT2A (MLL) rearrangement, the setting of lineage switch "
                      "(blast.lineage_switch_per_division).",
          source="Gardner 2016 Blood 127:2406; Jacoby 2016 Nat Commun 7:12320; Lamble 2023 Blood Adv 7:575 (KMT2A "
                 "rearrangement the only pre-infusion risk factor of lineage switch in 420 patients)"),
    Param("patient.ang2_ang1_ratio", float, 1.0, "-", 0.01, 100.0,
          description="Serum angiopoietin-2 : angiopoietin-1 ratio before lymphodepletion (pre-existing "
                      "endothelial activation; platelets store most circulating Ang-1, so thrombocytopenia "
                      "raises it). Sets the endothelial susceptibility to cytokines that drives "
                      "ICANS: (ratio / icans.ang2_ang1_reference) ** icans.endothelial_sensitivity.",
          source="Gust 2017 Cancer Discov 7:1404 (endothelial activation before treatment raised the risk of "
                 "high-grade neurotoxicity); Hay 2017 Blood 130:2295 (Ang-2 raised before lymphodepletion in severe "
                 "CRS; thrombocytopenia before lymphodepletion predicts CRS); value: the reference patient"),
    Param("patient.monocytes_per_nl", float, 0.4, "1e9/L", 0.0, 10.0,
          description="Absolute monocyte count before lymphodepletion: the myeloid cells CAR-T cells activate "
                      "(their IL-6/IL-1 output scales with it: myeloid capacity = count / "
                      "myeloid.monocytes_reference_per_nl).",
          source="Norelli 2018 Nat Med 24:739 (human monocytes were the major source of IL-1 and IL-6 in CRS; "
                 "depleting them prevented it); that the count predicts CRS in patients is an assumption (no "
                 "clinical source found; baseline CRP and ferritin did not predict severe CRS, Teachey 2016 Cancer "
                 "Discov 6:664); value: assumption, a relapsed child's count"),
    # blasts and normal cells ---------------------------------------------
    Param("blast.division_rate_per_day", float, 0.105, "1/d", 0.0, 2.0,
          description="Division hazard of a blast (into a free neighbour, or onto a normal one: see "
                      "blast.displacement_probability).",
          source="Br J Haematol 1997;98:999 (birth ~10-11 %/d)"),
    Param("blast.death_rate_per_day", float, 0.04, "1/d", 0.0, 2.0,
          description="Apoptosis hazard of a blast.",
          source="Br J Haematol 1997;98:999 (apoptosis ~4 %/d)"),
    Param("blast.displacement_probability", float, 1.0, "-", 0.0, 1.0,
          description="Probability that a dividing blast with no free neighbour places its daughter on a "
                      "neighbouring normal hematopoietic cell or B cell, which leaves the marrow (normal cells "
                      "divide only into space). 0 freezes blasts in a refilled marrow; 1 lets them grow at their "
                      "untreated rate wherever they border normal marrow.",
          source="assumption from Br J Haematol 1997;98:999 (the untreated net growth of ~7 %/d was measured in "
                 "packed diagnostic marrows, so blast division is not held back by normal neighbours) and "
                 "Colmone 2008 Science 322:1861 (leukemic cells take over the marrow niche and displace normal "
                 "progenitors)"),
    Param("blast.cd19_inheritance_sd", float, 1.0, "antigen levels", 0.0, 20.0,
          description="SD of the CD19 level change from mother to daughter (one level = 3.7 %); CD22 levels "
                      "drift with the same SD, independently.",
          source="assumption: antigen density is heritable with small drift"),
    Param("bcell.division_rate_per_day", float, 0.05, "1/d", 0.0, 2.0,
          description="Division hazard of a normal B cell with a free neighbour.",
          source="assumption: B-lymphopoiesis turnover of days to weeks"),
    Param("bcell.cd19_molecules", float, 15000.0, "molecules/cell", 10.0, 100000.0,
          description="CD19 density on normal B cells.",
          source="assumption: normal B cells carry ~1-2e4 CD19 molecules (quantitative flow cytometry)"),
    Param("bcell.cd22_molecules", float, 10000.0, "molecules/cell", 10.0, 100000.0,
          description="CD22 density on normal B cells (used when CD22 is tracked, see patient.cd22_tracking).",
          source="assumption: mature B cells carry CD22 at ~1e4 molecules, above most B-ALL blasts (CD22 rises with "
                 "B-cell maturation; quantified on normal B cells by Jasper 2011 Cytometry B 80:83)"),
    Param("bcell.death_rate_per_day", float, 0.05, "1/d", 0.0, 2.0,
          description="Death hazard of a normal B cell.",
          source="assumption: balanced with division at steady state"),
    Param("normal.division_rate_per_day", float, 0.3, "1/d", 0.0, 2.0,
          description="Division hazard of another hematopoietic cell with a free neighbour (only cells with "
                      "space divide, so the packed marrow is at steady state while an emptied one regrows at "
                      "up to division - death).",
          source="assumption: progenitors regenerate an emptied marrow within weeks (neutrophil recovery ~2-4 "
                 "weeks after Flu/Cy and CAR-T; Fried 2019 Bone Marrow Transplant 54:1643); at the former "
                 "0.1/d (= death) the marrow never regrew and day-28 MRD was read in a ~3 %-cellular window"),
    Param("normal.death_rate_per_day", float, 0.1, "1/d", 0.0, 2.0,
          description="Death (or egress) hazard of another hematopoietic cell.",
          source="assumption: myeloid marrow turnover of days"),
    # product and schedule -------------------------------------------------
    Param("product.dose_per_kg", float, 3e6, "cells/kg", 1e4, 5e8,
          description="CAR-T cells infused per kg body weight (whole schedule).",
          source="tisagenlecleucel label 0.2-5.0e6/kg (<=50 kg), median ~3e6/kg"),
    Param("product.affinity_kd_nM", float, 0.33, "nM", 0.01, 1000.0,
          description="CAR binder dissociation constant; lower is tighter.",
          source="Ghorashian 2019 Nat Med 25:1408 (FMC63 0.33 nM, CAT 14.3 nM)"),
    Param("product.kon_per_M_s", float, 2e5, "1/(M s)", 1e3, 1e8,
          description="CAR binder association rate k_on; with product.affinity_kd_nM it gives the off-rate "
                      "k_off = K_D k_on, which sets kinetic proofreading (cart.proofreading_steps) and how soon a "
                      "conjugate lets go (cart.detach_per_unbinding).",
          source="assumption: a typical scFv association rate (1e5-1e6 /M/s); with it FMC63 (0.33 nM) "
                 "dissociates at ~7e-5 /s and CAT (14.3 nM) at ~3e-3 /s, as Ghorashian 2019 Nat Med 25:1408 "
                 "reports CAT's 40-fold lower affinity to be 'largely owing to a much faster rate of antigen "
                 "dissociation'"),
    Param("product.costimulation", str, "4-1BB", "-", choices=("4-1BB", "CD28"),
          description="Costimulatory domain (its effects on expansion and persistence come with the biology issue).",
          source="SCIENCE.md"),
    Param("product.target", str, "CD19", "-", choices=("CD19", "CD22", "CD19/CD22"),
          description="Antigen(s) the CAR recognises: CD19, CD22, or both (a tandem/bispecific OR-gate CAR: a "
                      "cell carrying either antigen is a target; it responds to the denser of the two). The same "
                      "antigen-density response (cart.antigen_threshold_molecules, product.affinity_kd_nM) is "
                      "used for either antigen.",
          source="tisagenlecleucel targets CD19 (Maude 2018 NEJM 378:439); CD22 CAR: Fry 2018 Nat Med 24:20; "
                 "dual CD19/CD22 CARs: Fergusson 2023 Front Immunol 14:1178403 (meta-analysis)"),
    Param("product.transduced_blasts", float, 0.0, "cells", 0.0, 1e6,
          description="Leukemic blasts in the product that were transduced with the CAR during manufacturing. "
                      "The CAR each one expresses binds the target on its own surface in cis and masks it, so "
                      "no CAR-T cell of this product ever binds them (nor their progeny: the CAR gene is "
                      "inherited); they enter the body's reservoir with the dose (each fraction its share) and "
                      "may relapse as target-negative leukemia (relapse_route 'masking').",
          source="Ruella 2018 Nat Med 24:1499 (one patient: a single transduced leukemic B cell, CD19-negative "
                 "relapse 9 months after CTL019); a cohort draws one such cell per product with the rate in "
                 "abm.cohort.MASKING_PREVALENCE"),
    Param("schedule.days", list, [0.0], "d", 0.0, 730.0,
          description="Days of the infusions.",
          source="single infusion (ELIANA); fractionated and split schedules are options"),
    Param("schedule.fractions", list, [1.0], "-", 0.0, 1.0,
          description="Fraction of the dose given on each day of schedule.days; must sum to 1.",
          source="e.g. 10/30/60 % over three days (SCIENCE.md)"),
    Param("schedule.hold_crs_grade", int, 0, "CRS grade", 0, 4,
          description="Hold (skip) a later fraction of the schedule when CRS is at this ASTCT grade or above on its "
                      "day; 0 = never hold. The first fraction is always given.",
          source="Frey 2020 J Clin Oncol 38:415 (fractionated 10/30/60 % CTL019 in adult ALL: the second and third "
                 "fractions were held in patients with early CRS)"),
    # CAR-T cells ----------------------------------------------------------
    Param("cart.speed_um_per_min", float, 3.0, "um/min", 0.1, 20.0,
          description="Mean migration speed; a step moves one site with p = speed * dt / site.",
          source="PhysiCell cancer_immune 1 um/min, CARTopiaX 5 um/min; Cazaux 2019 JEM (marrow)"),
    Param("cart.swap_probability", float, 0.5, "-", 0.0, 1.0,
          description="Probability that a move blocked by a non-T marrow cell swaps places with it.",
          source="assumption: T cells squeeze between packed marrow cells"),
    Param("cart.chemotaxis_bias", float, 0.2, "-", 0.0, 1.0,
          description="Probability that a move follows the CXCL12 gradient instead of a random direction.",
          source="assumption: CXCR4+ T cells are drawn to CXCL12-rich niches; CXCL12-abundant reticular cells "
                 "are scattered throughout marrow (Sugiyama 2006 Immunity 25:977), so gradients are shallow; "
                 "calibrated (issue 4)"),
    Param("cart.attach_rate_per_h", float, 1.0, "1/h", 0.0, 60.0,
          description="Hazard of engaging a CD19+ neighbour at saturating antigen.",
          source="PhysiCell cancer_immune (attachment ~60 min)"),
    Param("cart.kill_rate_per_h", float, 4.0, "1/h", 0.0, 60.0,
          description="Hazard of killing an engaged target at saturating antigen.",
          source="PhysiCell cancer_immune (1/15 per min); Cazaux 2019 JEM (kill within ~25 min)"),
    Param("cart.detach_rate_per_h", float, 0.5, "1/h", 0.0, 60.0,
          description="Hazard of releasing an engaged target without killing it.",
          source="assumption: failed synapses dissolve within hours"),
    Param("cart.antigen_threshold_molecules", float, 2000.0, "molecules/cell", 10.0, 100000.0,
          description="CD19 density at which attach and kill hazards are half maximal (for a tight binder).",
          source="Majzner 2020 Cancer Discov 10:702 (~2,000 molecules/cell)"),
    Param("cart.antigen_hill", float, 2.0, "-", 0.5, 8.0,
          description="Hill coefficient of the antigen-density response.",
          source="assumption: switch-like response around the threshold (Majzner 2020)"),
    Param("cart.kd_ref_nM", float, 10.0, "nM", 0.01, 1000.0,
          description="Binder K_D at which the antigen threshold doubles: threshold * (1 + K_D / kd_ref).",
          source="assumption: low-affinity binders need more antigen (Ghorashian 2019)"),
    Param("cart.proofreading_steps", float, 0.0, "steps", 0.0, 6.0,
          description="Kinetic-proofreading steps N between CAR binding and signalling: a bond signals with "
                      "probability phi = (k_p / (k_p + k_off))^N (k_p = cart.proofreading_rate_per_s, k_off from "
                      "product.*). phi multiplies the kill hazard and the body's cytokine output per activated "
                      "cell, and divides the engagements before exhaustion (a weaker signal exhausts later); "
                      "0 = every bond signals (phi = 1).",
          source="McKeithan 1995 PNAS 92:5042 (kinetic proofreading); Tischer & Weiner 2019 eLife (CAR signalling "
                 "is strongly gated by ligand binding half-life); Pettmann 2021 eLife (2.67 steps for the TCR); "
                 + OFF),
    Param("cart.proofreading_rate_per_s", float, 0.36, "1/s", 1e-3, 10.0,
          description="Rate k_p of each kinetic-proofreading step (see cart.proofreading_steps).",
          source="Pettmann 2021 eLife (TCR proofreading delay ~2.8 s, i.e. ~0.36 /s); Harris 2018 J Immunol "
                 "200:1088 (CARs are 10-100-fold less sensitive than TCRs with the same binder: less efficient "
                 "signalling kinetics, so k_p may be slower)"),
    Param("cart.detach_per_unbinding", float, 0.0, "-", 0.0, 10.0,
          description="Conjugate release added per unit CAR-antigen off-rate: the detach hazard is "
                      "cart.detach_rate_per_h + c k_off [1/h], so a faster-dissociating binder lets go of its "
                      "target sooner (shorter dwell) and engages the next; 0 = dwell independent of the binder.",
          source="Ghorashian 2019 Nat Med 25:1408 (the fast-off-rate CAT binder: more expansion, no severe CRS, "
                 "killing kept); the size is an assumption; " + OFF),
    Param("cart.trogocytosis_fraction", float, 0.0, "-", 0.0, 0.9,
          description="Share of a target's CAR-bound antigen molecules that a CAR-T cell strips off a blast or B "
                      "cell at each engagement (trogocytosis), for a binder much tighter than cart.kd_ref_nM; a "
                      "binder of dissociation constant K_D strips this / (1 + K_D / kd_ref) (fewer bonds at the "
                      "synapse). The stripped cell re-expresses it (blast.antigen_recovery_h); the CAR-T cell "
                      "carries it (cart.acquired_antigen_half_life_h) and is a target of other CAR-T cells "
                      "(fratricide) meanwhile.",
          source="Hamieh 2019 Nature 568:112 (trogocytic CD19 transfer: reversible antigen loss, fratricide and "
                 "exhaustion, within hours of contact); Olson 2022 Leukemia 36:1943 (a low-affinity CD19 binder "
                 "trogocytoses less); the share per engagement is an assumption; " + OFF),
    Param("cart.acquired_antigen_half_life_h", float, 12.0, "h", 1.0, 168.0,
          description="Half-life of the antigen a CAR-T cell took by trogocytosis on its surface (internalised "
                      "or shed); it falls one density level (3.7 %) at a time.",
          source="assumption: surface protein turnover over hours (Hamieh 2019: trogocytosed CD19 on CAR-T "
                 "cells within hours of contact, lost when antigen is gone)"),
    Param("cart.activation_h", float, 12.0, "h", 0.1, 240.0,
          description="How long a stimulated CAR-T cell stays activated (secreting, able to divide).",
          source="assumption: activation lasts about a cell cycle"),
    Param("cart.proliferation_rate_per_day", float, 0.89, "1/d", 0.0, 5.0,
          description="Division hazard of an activated CAR-T cell with a free neighbour.",
          source="Stein 2019 CPT:PSP 8:285 (in vivo doubling ~0.78 d during expansion)"),
    Param("cart.max_divisions", int, 10, "divisions", 0, 60,
          description="Divisions allowed along a CAR-T lineage (division destiny), in the window and in the "
                      "body pool; a cell recalled from memory starts again.",
          source="CARCADE (Prybutok 2022); SCIENCE.md; Hawkins 2007 PNAS 104:5032 and Heinzel 2017 Nat Immunol "
                 "18:96 (T cells make a programmed number of divisions, then stop)"),
    Param("cart.max_divisions_sd", float, 0.0, "divisions", 0.0, 5.0,
          description="Patient-to-patient spread of cart.max_divisions in virtual cohorts (abm.cohort."
                      "sample_patient: normal around it, rounded); a single run does not use it.",
          source="assumption: products differ in proliferative capacity (Fraietta 2018 Nat Med 24:563: "
                 "memory-like products expand more and respond; non-responders expand poorly); calibrated "
                 "(issue 4)"),
    Param("cart.death_rate_per_day", float, 0.16, "1/d", 0.0, 5.0,
          description="Natural death hazard of an effector CAR-T cell (contraction after the peak).",
          source="Stein 2019 CPT:PSP 8:285 (fast decline half-life ~4.3 d: ln 2 / 4.3 = 0.16/d)"),
    Param("cart.memory_fraction", float, 0.3, "-", 0.0, 1.0,
          description="Fraction of infused CAR-T cells with a memory phenotype.",
          source="Fraietta 2018 Nat Med 24:563 (memory-like CD8+ subsets ~10-50 % of products)"),
    Param("cart.memory_fraction_sd_logit", float, 0.0, "-", 0.0, 2.0,
          description="Product-to-product spread of cart.memory_fraction in virtual cohorts (abm.cohort."
                      "sample_patient: logit-normal around it, this SD on the logit scale); a single run does not "
                      "use it. 0.7 puts 90 % of products between 12 % and 57 % memory cells around the 30 % default.",
          source="Fraietta 2018 Nat Med 24:563 (memory-like CD27+CD45RO- CD8+ subsets ~10-50 % of products, more "
                 "in responders); Finney 2019 J Clin Invest 129:2123 (product composition and remission "
                 "durability); the spread is an assumption; " + OFF),
    Param("cart.memory_conversion_per_day", float, 0.0013, "1/d", 0.0, 1.0,
          description="Hazard that a resting effector CAR-T cell becomes a memory cell.",
          source="Stein 2019 CPT:PSP 8:285 (~0.8 % of expanded cells enter the slow phase: "
                 "mu / (mu + 0.16/d) = 0.008)"),
    Param("cart.memory_death_rate_per_day", float, 0.00315, "1/d", 0.0, 1.0,
          description="Death hazard of a memory CAR-T cell.",
          source="Stein 2019 CPT:PSP 8:285 (slow phase half-life ~220 d)"),
    Param("cart.exhaustion_engagements", int, 20, "engagements", 1, 10000,
          description="Antigen engagements after which a CAR-T cell exhausts (4-1BB, K_D -> 0; see costim.* and "
                      "cart.kd_ref_nM for the scaling); halved at each division.",
          source="Weigelin 2021 Nat Commun 12:5217 (killing wanes after ~20 h of serial engagement, "
                 "~1 engagement/h); ARCADE MAX_ANTIGEN_BINDING = 10"),
    Param("cart.exhausted_apoptosis_fraction", float, 0.5, "-", 0.0, 1.0,
          description="Fraction of cells reaching the exhaustion threshold that die instead of exhausting.",
          source="ARCADE parameter.patch.xml (EXHAUSTED_FRAC = 0.5)"),
    Param("cart.aicd_per_engagement", float, 0.02, "-", 0.0, 1.0,
          description="Probability of activation-induced cell death at each antigen engagement.",
          source="assumption: AICD removes a few % of stimulated T cells per stimulation"),
    Param("costim.cd28_proliferation_factor", float, 1.3, "-", 0.5, 3.0,
          description="CD28 vs 4-1BB: multiplier of the proliferation hazard (faster, higher expansion).",
          source="Zhao 2015 Cancer Cell 28:415; Kawalekar 2016 Immunity 44:380 (CD28 effector-like, faster)"),
    Param("costim.cd28_exhaustion_factor", float, 0.5, "-", 0.1, 2.0,
          description="CD28 vs 4-1BB: multiplier of the exhaustion threshold (CD28 exhausts sooner).",
          source="Long 2015 Nat Med 21:581 (4-1BB ameliorates exhaustion)"),
    Param("costim.cd28_memory_factor", float, 0.3, "-", 0.0, 2.0,
          description="CD28 vs 4-1BB: multiplier of memory conversion (4-1BB favours memory, persistence).",
          source="Kawalekar 2016 Immunity 44:380; clinical persistence weeks (CD28) vs months-years (4-1BB)"),
    Param("costim.cd28_threshold_factor", float, 0.5, "-", 0.1, 2.0,
          description="CD28 vs 4-1BB: multiplier of the antigen-density threshold (CD28 needs less antigen).",
          source="Majzner 2020 Cancer Discov 10:702 (CD28z more sensitive to low CD19 density)"),
    Param("blast.cd19_loss_per_division", float, 0.001, "1/division", 0.0, 0.1,
          description="Probability that a CD19+ blast daughter loses CD19 (splicing, mutation: antigen escape).",
          source="assumption: CD19-negative relapse in ~1/3 of relapses (Orlando 2018 Nat Med 24:1504)"),
    Param("blast.lineage_switch_per_division", float, 0.0, "1/division", 0.0, 0.01,
          description="Probability that a daughter of a KMT2A-rearranged blast switches to the myeloid lineage "
                      "(losing CD19 and CD22: escape from CD19, CD22 and dual CARs alike); blasts of other patients "
                      "do not switch (patient.kmt2a_rearranged).",
          source="Gardner 2016 Blood 127:2406 (myeloid lineage switch after CD19 CAR-T in KMT2A-rearranged "
                 "B-ALL); Jacoby 2016 Nat Commun 7:12320 (lineage switch of MLL-AF9 B-ALL under CD19 CAR-T "
                 "pressure in mice); the per-division rate is unknown: " + OFF),
    Param("blast.antigen_recovery_h", float, 24.0, "h", 3.0, 336.0,
          description="Time a blast or B cell takes to re-express a tenfold loss of antigen to trogocytosis "
                      "(cart.trogocytosis_fraction): one density level (3.7 %) at a time, so recovery is linear "
                      "in log density; the cell keeps the density its genes set, and its daughters the deficit.",
          source="Hamieh 2019 Nature 568:112 (antigen loss by trogocytosis reverses once CAR-T cells are gone); "
                 "PMC10608797 (2023: CD19-low B cells removed from CAR-T pressure regain wild-type CD19); the "
                 "time of about a day is an assumption"),
    Param("blast.cd22_loss_per_division", float, 0.0005, "1/division", 0.0, 0.1,
          description="Probability that a CD22+ blast daughter loses CD22 (independently of CD19).",
          source="assumption: half the CD19 rate; relapse after CD22 CAR is mostly CD22-dim rather than CD22-"
                 "negative (Fry 2018 Nat Med 24:20), which selection of low-density blasts gives without loss"),
    Param("niche.kill_protection", float, 0.5, "-", 0.0, 1.0,
          description="Fractional reduction of attach and kill hazards for targets next to a stromal niche cell.",
          source="assumption: stromal contact (CXCL12/VLA-4) protects leukemia from T-cell killing"),
    Param("bcell.production_per_day", float, 0.005, "1/d", 0.0, 1.0,
          description="Hazard that another hematopoietic cell (holding the progenitors) gives rise to a B cell.",
          source="assumption: B lymphopoiesis renews marrow B cells over weeks (B-cell recovery after CAR-T loss)"),
    Param("lymphodepletion.enabled", bool, True, "-",
          description="Fludarabine/cyclophosphamide before infusion: fewer normal marrow cells, faster expansion.",
          source="ELIANA protocol (Maude 2018 NEJM)"),
    Param("lymphodepletion.normal_cell_survival", float, 0.6, "-", 0.0, 1.0,
          description="Fraction of normal (non-blast) marrow cells left at infusion after lymphodepletion.",
          source="assumption: Flu/Cy causes marrow hypocellularity"),
    Param("lymphodepletion.proliferation_boost", float, 1.5, "-", 1.0, 5.0,
          description="Multiplier of CAR-T proliferation during the boost window (IL-7/IL-15 surge).",
          source="Hirayama 2019 Blood 133:1876 (Cy/Flu improves expansion); assumption for the size"),
    Param("lymphodepletion.boost_days", float, 14.0, "d", 0.0, 60.0,
          description="How long the homeostatic proliferation boost lasts after infusion.",
          source="assumption: cytokine surge resolves within ~2 weeks"),
    Param("lymphodepletion.boost_shape", str, "step", "-", choices=("step", "consumed"),
          description="How the homeostatic boost of CAR-T proliferation evolves: 'step' (the full boost for "
                      "lymphodepletion.boost_days, then none) or 'consumed' (boost 1 + (b - 1) H: the surge H of "
                      "IL-7/IL-15, 1 at infusion, fades as lymphocytes recover and as the CAR-T cells themselves "
                      "take it up, dH/dt = -(ln 2 / half-life + q (E + M) / 1e9) H; a larger dose or expansion "
                      "uses it up sooner, so expansion grows less than in proportion to the dose).",
          source="Kochenderfer 2017 J Clin Oncol 35:1803 (Flu/Cy raises serum IL-15; high IL-15 goes with high "
                 "CAR-T peaks and remission); Hirayama 2019 Blood 133:1876 (IL-7 rises after lymphodepletion); "
                 "'step' until the issue-23/28 recalibration"),
    Param("lymphodepletion.cytokine_half_life_days", float, 5.0, "d", 0.5, 30.0,
          description="Half-life of the homeostatic cytokine surge without CAR-T uptake ('consumed' shape).",
          source="assumption: IL-15 returns towards baseline within about two weeks of lymphodepletion "
                 "(Kochenderfer 2017 reports the rise; its time course is not verified here)"),
    Param("lymphodepletion.consumption_per_day", float, 0.1, "1/d per 1e9 CAR-T", 0.0, 100.0,
          description="Rate at which 1e9 CAR-T cells (effector and memory) take up the surge ('consumed' shape).",
          source="assumption: IL-15 is consumed by the lymphocytes that bear its receptor (IL-2/15R beta, common "
                 "gamma chain), so a pool of ~1e10 cells at the peak uses the surge up within a day"),
    Param("cart.marrow_exit_rate_per_day", float, 1.0, "1/d", 0.0, 100.0,
          description="Hazard that a free CAR-T cell next to a sinusoid re-enters the blood.",
          source="assumption: lymphocyte marrow transit of about a day"),
    # blood traffic --------------------------------------------------------
    Param("traffic.marrow_entry_rate_per_day", float, 0.5, "1/d", 0.0, 100.0,
          description="Hazard that a blood CAR-T cell homes into the marrow (whole body).",
          source="assumption: infused T cells leave blood within days (Mueller 2017 Blood)"),
    Param("traffic.blood_loss_rate_per_day", float, 1.0, "1/d", 0.0, 100.0,
          description="Hazard that a blood CAR-T cell leaves to other tissues or dies.",
          source="assumption: most infused cells distribute to lymphoid tissues within days"),
    Param("traffic.blood_volume_ml_per_kg", float, 70.0, "mL/kg", 50.0, 100.0,
          description="Blood volume (to express blood CAR-T as cells/uL).",
          source="pediatric blood volume 70-80 mL/kg"),
    # fields -----------------------------------------------------------------
    Param("il6.secretion_fg_per_cell_per_h", float, 0.01, "fg/cell/h", 0.0, 1000.0,
          description="IL-6 secreted by an activated CAR-T cell (and the myeloid response it triggers).",
          source="assumption: order of magnitude of T-cell cytokine secretion; calibrated later"),
    Param("il6.diffusion_um2_per_s", float, 10.0, "um^2/s", 0.0, 1000.0,
          description="Effective IL-6 diffusivity in marrow.",
          source="assumption: cytokines 10-100 um^2/s in tissue (Francis & Palsson 1997 PNAS 94:12258)"),
    Param("il6.half_life_h", float, 1.0, "h", 0.05, 24.0,
          description="IL-6 half-life (clearance and receptor uptake).",
          source="Hosseini 2020 npj Syst Biol Appl; Hornik 2019 (20 min to ~4 h)"),
    Param("cxcl12.secretion_fg_per_cell_per_h", float, 0.05, "fg/cell/h", 0.0, 1000.0,
          description="CXCL12 secreted by a stromal niche cell.",
          source="assumption: sets the gradient shape only (chemotaxis compares neighbours)"),
    Param("cxcl12.diffusion_um2_per_s", float, 5.0, "um^2/s", 0.0, 1000.0,
          description="Effective CXCL12 diffusivity (binds matrix, so slower than IL-6).",
          source="assumption: heparan-sulfate binding slows CXCL12"),
    Param("cxcl12.half_life_h", float, 2.0, "h", 0.05, 48.0,
          description="CXCL12 half-life in marrow.",
          source="assumption"),
    # -- body, cytokines, toxicity and therapy (abm/body) --
    Param("body.antigen_half_saturation_cells", float, 1e10, "cells", 1e6, 1e13,
          description="Body CD19+ cell load K_A at which antigen-driven stimulation of body CAR-T (expansion, "
                      "IL-6, memory recall) is half maximal: stimulation = A / (A + K_A).",
          source="assumption: ~3 % of a 30 kg child's ~3e11 marrow cells; an ELIANA-like load (68 % blasts, "
                 "~2e11 cells) gives 95 % of the maximal rate, MRD-level disease (1e-4, ~3e7 cells) 0.3 %"),
    Param("body.marrow_share", float, 0.2, "-", 0.0, 1.0,
          description="Fraction of the tissue CAR-T pool that resides in the marrow (sets the CAR-T density the "
                      "window is fed towards).",
          source="Westermann & Pabst 1992 Clin Investig 70:539 (marrow ~10 % of lymphocytes); assumption: "
                 "CAR-T concentrate in leukemic marrow"),
    Param("body.marrow_homing_rate_per_day", float, 2.0, "1/d", 0.0, 100.0,
          description="Rate at which the window's CAR-T count is topped up towards its share of the body's "
                      "marrow CAR-T (entries through the sinusoids).",
          source="assumption: lymphocytes equilibrate between blood and marrow within about a day"),
    Param("body.blood_fraction", float, 0.02, "-", 0.001, 0.5,
          description="Fraction of the body CAR-T pool in blood at equilibrium (sets the tissue-to-blood "
                      "return rate from the blood-to-tissue rate).",
          source="Westermann & Pabst 1992 Clin Investig 70:539 (~2 % of the body's lymphocytes are in blood)"),
    Param("body.memory_reactivation_per_day", float, 0.5, "1/d", 0.0, 10.0,
          description="Hazard that a memory CAR-T cell in tissue turns effector, at saturating antigen "
                      "(times the stimulation A / (A + K_A)).",
          source="assumption: memory T cells re-expand within days of meeting antigen again"),
    Param("body.antigen_signal", str, "count", "-", choices=("count", "response"),
          description="How the body's CAR-T stimulation reads its CD19+ load A: 'count' (every target cell "
                      "alike) or 'response' (each cell weighted by the CAR's response to its antigen density, the "
                      "Hill function of cart.antigen_threshold_molecules, product.affinity_kd_nM and "
                      "product.costimulation that the window's attach and kill hazards use; the residual disease "
                      "outside the window by the mean response over the patient's density distribution), so that "
                      "a patient with dim blasts, or a looser binder, stimulates expansion, cytokines and memory "
                      "recall less.",
          source="Majzner 2020 Cancer Discov 10:702 (below ~2,000 CD19 molecules per cell CAR-T cytokine "
                 "output and killing collapse; CD28 more sensitive than 4-1BB); 'count' until the issue-23/28 "
                 "recalibration"),
    Param("body.targets_per_cart", float, 0.0, "cells per CAR-T", 0.0, 1000.0,
          description="CD19+ cells one tissue CAR-T cell ties up (engaged, or being searched for), so that CAR-T "
                      "cells compete for the antigen they meet: stimulation = A / (A + K_A + c (E_t + M_t)). With "
                      "c > 0 the pool stops expanding when it outgrows its antigen, so the peak follows the "
                      "tumour burden more than the dose; 0 = no competition.",
          source="Mueller 2018 Clin Cancer Res 24:6175 (79 ELIANA/ENSIGN patients: responses across the whole "
                 "label dose range and no dose-safety relationship); Awasthi 2020 Blood Adv 4:560 (no relation of "
                 "kinetics to dose; the dose-CRS association vanishes after adjusting for tumour burden); Singh "
                 "2021 CPT Pharmacometrics Syst Pharmacol 10:362 (burden moves exposure more than dose); form: "
                 "ratio-dependent (effector:target) functional response, an assumption; " + OFF),
    # -- residual disease outside the window (abm/body) --
    Param("relapse.reservoir_fraction", float, 0.01, "-", 0.0, 0.5,
          description="Leukemia the window does not sample (CNS, testes, extramedullary sites, marrow spaces CAR-T "
                      "cells reach poorly) at infusion, as a fraction of the body's marrow blasts; it grows, is "
                      "killed by tissue CAR-T cells and reseeds the window's marrow (the source of relapse).",
          source="assumption: CNS involvement is common in relapsed B-ALL and the marrow is sampled at one "
                 "site (Pui 2009 Lancet Oncol 10:257); to be calibrated to relapse (issue 4)"),
    Param("relapse.reservoir_kill_per_day", float, 0.02, "1/d per 1e9 CAR-T", 0.0, 10.0,
          description="Killing hazard of target-positive reservoir blasts per 1e9 CAR-T cells in tissue (effector "
                      "and memory, times the steroid activation factor).",
          source="assumption: sanctuary disease is cleared more slowly than marrow disease, by the same pool "
                 "(CAR-T cells reach the CSF, Maude 2014 NEJM 371:1507); to be calibrated to relapse (issue 4)"),
    Param("relapse.reseed_rate_per_day", float, 0.01, "1/d", 0.0, 1.0,
          description="Fraction of reservoir blasts that home to marrow per day; the window receives its share "
                      "through the perivascular sites.",
          source="assumption: leukemic blasts recirculate and home to marrow via CXCR4/CXCL12 (Sipkins 2005 "
                 "Nature 435:969); to be calibrated to relapse (issue 4)"),
    Param("serum.il6_baseline_pg_ml", float, 2.0, "pg/mL", 0.0, 50.0,
          description="Serum IL-6 without CAR-T activation.",
          source="assumption: healthy serum IL-6 is a few pg/mL"),
    Param("serum.il6_half_life_h", float, 2.0, "h", 0.33, 24.0,
          description="Serum IL-6 half-life without tocilizumab (renal and IL-6-receptor-mediated clearance).",
          source="Hosseini 2020 npj Syst Biol Appl; Hornik 2019 (20 min to ~4 h; SCIENCE.md): mid-range"),
    Param("serum.il6_production_pg_ml_per_day", float, 80.0, "pg/mL/d per 1e9 cells", 0.0, 1e5,
          description="Serum IL-6 production per 1e9 antigen-stimulated effector CAR-T cells, before myeloid "
                      "amplification.",
          source="assumption: ~1e9 stimulated effectors (day ~3 of a typical expansion) give fever (~30 pg/mL "
                 "excess) with the default amplification; calibrate (issue 4)"),
    Param("serum.diluted_by_weight", bool, False, "-",
          description="Whether the CAR-T-driven IL-6 production (serum.il6_production_pg_ml_per_day, the value "
                      "for a 30 kg patient) is diluted in a distribution volume proportional to body weight, so "
                      "that the same activated cells raise a small child's serum IL-6 more than an adult's; false: "
                      "every patient as a 30 kg one.",
          source="physics: a concentration is an amount over its volume, and plasma and extracellular volumes "
                 "scale with weight; the calibrated model before issue 23 had no dilution, which made serum IL-6 "
                 "grow with weight at a fixed dose per kg (rank correlation +0.33 of weight with the CRS grade in "
                 "experiments/results/calibration_report); off until the issue-23/28 recalibration"),
    Param("serum.il6_production_sd_log10", float, 0.0, "log10", 0.0, 1.5,
          description="Patient-to-patient spread of serum.il6_production_pg_ml_per_day in virtual cohorts "
                      "(abm.cohort.sample_patient: log-normal around it); a single run does not use it.",
          source="assumption: the host cytokine response (monocyte/macrophage IL-6, IL-1) varies between "
                 "patients beyond tumour burden and expansion (Teachey 2016 Cancer Discov 6:664: peak IL-6 "
                 "spans >2 logs; Giavridis 2018 Nat Med 24:731); calibrated (issue 4)"),
    Param("serum.il6_division_decay", float, 1.0, "-", 0.3, 1.0,
          description="IL-6 production of an effector CAR-T cell after i divisions, as a fraction delta^i of a "
                      "freshly stimulated one (1: every division stage produces alike).",
          source="Weber 2021 Science 372:eaba1786; Long 2015 Nat Med 21:581 (repeated antigen stimulation "
                 "progressively cuts CAR-T cytokine secretion, exhaustion); ELIANA CRS starts ~day 3 "
                 "(SCIENCE.md), a week before the CAR-T peak (~day 10), so IL-6 rises less steeply than the "
                 "pool; size: assumption, calibrated (issue 4)"),
    Param("serum.myeloid_amplification", float, 9.0, "-", 0.0, 100.0,
          description="Maximal extra IL-6 production of the myeloid response, as a multiple of the "
                      "T-cell-driven production (self-reinforcing, saturating in serum IL-6).",
          source="Giavridis 2018 Nat Med 24:731; Norelli 2018 Nat Med 24:739 (monocyte/macrophage IL-6 "
                 "drives CRS); size: assumption"),
    Param("serum.myeloid_half_il6_pg_ml", float, 100.0, "pg/mL", 1.0, 1e5,
          description="Serum IL-6 at which the myeloid amplification is half maximal.",
          source="assumption: the loop engages at the IL-6 levels of grade >= 2 CRS"),
    Param("serum.receptor_clearance_fraction", float, 0.5, "-", 0.0, 1.0,
          description="Fraction of IL-6 clearance mediated by the IL-6 receptor (blocked by tocilizumab, so "
                      "serum IL-6 rises while its signal falls).",
          source="Nishimoto 2008 Blood 112:3959 (serum IL-6 rises after tocilizumab); fraction: assumption"),
    Param("myeloid.il6_pg_ml_per_day", float, 0.0, "pg/mL/d", 0.0, 1e6,
          description="Serum IL-6 production of the fully activated myeloid compartment (monocytes, macrophages) "
                      "at the reference monocyte count; it adds to the T-cell-driven production (0: no myeloid "
                      "compartment).",
          source="Giavridis 2018 Nat Med 24:731 (CRS severity is mediated by IL-6, IL-1 and NO from recipient "
                 "macrophages, not by CAR-T-derived cytokines); Norelli 2018 Nat Med 24:739; Santurio 2025 PLoS "
                 "Comput Biol doi:10.1371/journal.pcbi.1012908 (macrophage-mediated CRS fitted to 25 patients); "
                 + OFF),
    Param("myeloid.il1_icans_pg_ml", float, 0.0, "pg/mL", 0.0, 1e6,
          description="Endothelial (ICANS) drive of the fully activated myeloid compartment's IL-1 at the "
                      "reference monocyte count, in serum-IL-6-excess equivalents (tocilizumab does not block it).",
          source="Norelli 2018 Nat Med 24:739 (anakinra abolished CRS and neurotoxicity; tocilizumab failed to "
                 "protect from delayed lethal neurotoxicity); Giavridis 2018 Nat Med 24:731; " + OFF),
    Param("myeloid.activation_per_day", float, 2.0, "1/d", 0.0, 100.0,
          description="Rate at which myeloid cells are activated by activated CAR-T cells (GM-CSF, CD40L, IFN-g) "
                      "at saturating drive.",
          source="Sterner 2019 Blood 133:697 (CAR-T GM-CSF activates myeloid cells; its blockade prevents CRS); "
                 "Santurio 2025 (CD40-CD40L contact the main route); rate: assumption (CRS within 2-3 days of "
                 "infusion in mice, Giavridis 2018), to be replaced by Santurio 2025's fitted rate"),
    Param("myeloid.resolution_per_day", float, 0.7, "1/d", 0.0, 100.0,
          description="Rate at which activated myeloid cells return to rest (about a day's half-life: ln 2 / rate).",
          source="assumption: macrophage activation resolves within days once the stimulus stops"),
    Param("myeloid.half_drive_cells", float, 1e9, "cells", 1e5, 1e13,
          description="Antigen-activated effector CAR-T cells (division-weighted, as for IL-6) that activate the "
                      "myeloid compartment half-maximally.",
          source="assumption: of the order of the activated pool at CRS onset (~1e9 cells by day ~3)"),
    Param("myeloid.half_drive_kills_per_day", float, 0.0, "cells/d", 0.0, 1e13,
          description="Target cells killed a day (body-wide: the window's kills over its share of the marrow, "
                      "and the reservoir's) whose danger signal activates the myeloid compartment half-maximally, "
                      "adding to the drive of the activated CAR-T cells (0: killing does not activate it).",
          source="Liu 2020 Sci Immunol 5:eaax7969 (CAR-T cells kill B-leukemia cells by gasdermin-E pyroptosis, "
                 "whose released contents activate macrophages to make IL-6 and IL-1: CRS); Santurio 2025 PLoS "
                 "Comput Biol (DAMP release one of three macrophage activation routes); the size is an "
                 "assumption; " + OFF),
    Param("myeloid.monocytes_reference_per_nl", float, 0.4, "1e9/L", 0.01, 10.0,
          description="Monocyte count at which the myeloid compartment has its declared output "
                      "(myeloid.il6_pg_ml_per_day, myeloid.il1_icans_pg_ml).",
          source="the default patient.monocytes_per_nl"),
    Param("serum.crp_baseline_mg_l", float, 1.0, "mg/L", 0.0, 500.0,
          description="Serum C-reactive protein without IL-6 signalling (a marker: it grades nothing).",
          source="assumption: healthy CRP is below ~3 mg/L"),
    Param("serum.crp_max_mg_l", float, 300.0, "mg/L", 1.0, 1000.0,
          description="CRP over baseline at saturating IL-6 signal: hepatocytes make CRP in response to IL-6 "
                      "receptor signalling, so tocilizumab stops it and CRP falls with its half-life while serum "
                      "IL-6 rises.",
          source="assumption: CRP in the hundreds of mg/L in CRS (Teachey 2016 Cancer Discov 6:664: CRP is "
                 "associated with CRS but does not predict severe CRS)"),
    Param("serum.crp_half_il6_pg_ml", float, 100.0, "pg/mL", 1.0, 1e5,
          description="IL-6 signal (after blockade) at which CRP synthesis is half maximal.",
          source="assumption: CRP rises with IL-6 at the levels of grade 1-2 CRS"),
    Param("serum.crp_half_life_h", float, 19.0, "h", 4.0, 96.0,
          description="Plasma half-life of CRP.",
          source="Vigushin 1993 J Clin Invest 91:1351 (radiolabelled CRP: ~19 h in health and disease)"),
    Param("crs.fever_il6_pg_ml", float, 30.0, "pg/mL", 1.0, 1e5,
          description="IL-6 signal (serum excess over baseline, after receptor blockade) at which the "
                      "temperature surrogate reaches 38.0 C (ASTCT CRS grade 1).",
          source="assumption: thresholds to be calibrated (issue 4); Teachey 2016 Cancer Discov 6:664 "
                 "(IL-6 in tens of pg/mL in mild, hundreds to thousands in severe CRS)"),
    Param("crs.grade2_il6_pg_ml", float, 150.0, "pg/mL", 1.0, 1e5,
          description="IL-6 signal from which hypotension needs fluids (no vasopressor) and hypoxia needs "
                      "low-flow oxygen (ASTCT CRS grade 2).",
          source="assumption: to be calibrated (issue 4); Teachey 2016 Cancer Discov 6:664"),
    Param("crs.grade3_il6_pg_ml", float, 600.0, "pg/mL", 1.0, 1e5,
          description="IL-6 signal from which one vasopressor and high-flow oxygen are needed (ASTCT CRS grade 3).",
          source="assumption: to be calibrated (issue 4); Teachey 2016 Cancer Discov 6:664"),
    Param("crs.grade4_il6_pg_ml", float, 2500.0, "pg/mL", 1.0, 1e5,
          description="IL-6 signal from which multiple vasopressors and positive-pressure ventilation are "
                      "needed (ASTCT CRS grade 4).",
          source="assumption: to be calibrated (issue 4); Teachey 2016 Cancer Discov 6:664"),
    Param("icans.delay_days", float, 2.0, "d", 0.1, 14.0,
          description="Mean delay of the neurotoxic effect compartment behind the serum IL-6 excess (ICANS "
                      "follows CRS by days).",
          source="assumption: ICANS typically starts days after CRS (Neelapu 2018 Nat Rev Clin Oncol 15:47); "
                 "calibrated (issue 4)"),
    Param("icans.ice_half_il6_pg_ml", float, 1500.0, "pg/mL", 1.0, 1e6,
          description="Effect-compartment level C at which the ICE-score surrogate is 5 of 10: "
                      "ICE = round(10 / (1 + (C / K)^n)) (n = icans.ice_hill).",
          source="assumption: to be calibrated (issue 4)"),
    Param("icans.ice_hill", float, 2.0, "-", 1.0, 8.0,
          description="Steepness n of the ICE-score surrogate ICE = round(10 / (1 + (C / K)^n)): the larger, "
                      "the more ICANS behaves as a threshold (few mild cases, most cases severe).",
          source="assumption: neurotoxicity follows endothelial activation and blood-brain-barrier disruption, "
                 "a threshold-like event (Gust 2017 Cancer Discov 7:1404); 2 was the fixed shape before "
                 "calibration; calibrated (issue 4)"),
    Param("icans.unarousable_factor", float, 1.5, "-", 1.0, 10.0,
          description="Effect level at which the patient is unarousable (ASTCT ICANS grade 4), as a multiple of "
                      "the level at which the ICE surrogate reaches 0 (K * 19^(1/n)); so ICE 0-2 while arousable "
                      "(grade 3) always lies below it, whatever K and n.",
          source="assumption: unarousable patients are those beyond ICE 0 (Lee 2019 Biol Blood Marrow "
                 "Transplant 25:625); replaces a fixed 6,000 pg/mL level that made grade 3 unreachable for "
                 "calibrated K and n"),
    Param("icans.endothelial_sensitivity", float, 0.0, "-", 0.0, 3.0,
          description="Exponent of the endothelial susceptibility (patient.ang2_ang1_ratio / "
                      "icans.ang2_ang1_reference) ** s that multiplies the drive of the ICANS effect compartment "
                      "(0: every patient alike).",
          source="Gust 2017 Cancer Discov 7:1404 (pre-existing endothelial activation predisposes); Korell 2022 "
                 "Front Immunol 13:877477 (pre-lymphodepletion EASIX, an endothelial score: odds ratio 1.72 "
                 "[1.26-2.46] of grade >= 3 CRS or ICANS per doubling); " + OFF),
    Param("icans.ang2_ang1_reference", float, 1.0, "-", 0.01, 100.0,
          description="Ang-2:Ang-1 ratio of the reference patient (susceptibility 1).",
          source="the default patient.ang2_ang1_ratio"),
    Param("therapy.tocilizumab_grade", int, 3, "CRS grade", 0, 4,
          description="CRS grade at which tocilizumab is given (0: never). The default follows the "
                      "tisagenlecleucel label and trials; 2 is the CARTOX practice (Neelapu 2018 Nat Rev Clin "
                      "Oncol 15:47).",
          source="Kymriah prescribing information, Table 1 (tocilizumab for CRS needing moderate to aggressive "
                 "intervention: hemodynamic instability despite fluids and vasopressors, or high-flow oxygen or "
                 "ventilation, i.e. ASTCT grade >= 3, Lee 2019 Biol Blood Marrow Transplant 25:625); JULIET gave "
                 "it only for severe (Penn 3-4) CRS (Schuster 2020 Blood Adv 4:1432); ELIANA/ENSIGN 40 % of "
                 "patients with CRS, beside 31 % on high-dose vasopressors (Levine 2021 JITC 9:e002287)"),
    Param("therapy.tocilizumab_blockade", float, 0.9, "-", 0.0, 1.0,
          description="Fraction of the IL-6 signal blocked while a tocilizumab dose acts.",
          source="assumption: near-saturating IL-6 receptor occupancy at 8-12 mg/kg"),
    Param("therapy.tocilizumab_duration_days", float, 7.0, "d", 0.1, 60.0,
          description="How long the blockade of one dose lasts.",
          source="assumption: concentration-dependent tocilizumab half-life of days (tocilizumab label)"),
    Param("therapy.tocilizumab_redose_h", float, 8.0, "h", 1.0, 168.0,
          description="Minimum interval between doses; a dose is repeated while CRS stays at or above the trigger.",
          source="tocilizumab label for CRS: further doses at least 8 h apart"),
    Param("therapy.tocilizumab_max_doses", int, 4, "doses", 0, 20,
          description="Most tocilizumab doses in a run.",
          source="tocilizumab label for CRS: at most 4 doses"),
    Param("therapy.steroids_grade", int, 3, "CRS or ICANS grade", 0, 4,
          description="CRS or ICANS grade at which corticosteroids start (0: never).",
          source="Neelapu 2018 Nat Rev Clin Oncol 15:47 (corticosteroids for grade 3-4 CRS and ICANS)"),
    Param("therapy.steroid_duration_days", float, 3.0, "d", 0.1, 60.0,
          description="Steroids continue this long after the last moment CRS or ICANS was at the trigger.",
          source="assumption: dexamethasone for 1-3 days, then a short taper"),
    Param("therapy.steroid_proliferation_factor", float, 0.3, "-", 0.0, 1.0,
          description="Multiplier of CAR-T proliferation (body and window) while on steroids.",
          source="assumption: glucocorticoids suppress T-cell proliferation strongly but reversibly"),
    Param("therapy.steroid_activation_factor", float, 0.7, "-", 0.0, 1.0,
          description="Multiplier of attach and kill hazards (window) and of antigen stimulation (body) on steroids.",
          source="assumption: cytotoxicity is less steroid-sensitive than proliferation and cytokine release"),
    Param("therapy.steroid_cytokine_factor", float, 0.3, "-", 0.0, 1.0,
          description="Multiplier of IL-6 production while on steroids.",
          source="assumption: glucocorticoids suppress monocyte/macrophage IL-6 release"),
    Param("therapy.steroid_icans_factor", float, 0.3, "-", 0.0, 1.0,
          description="Multiplier of the neurotoxic drive (ICANS effect compartment input) while on steroids.",
          source="assumption: dexamethasone reduces CNS inflammation and endothelial activation"),
)

UNCALIBRATED_DEFAULTS: dict[str, Any] = {p.key: p.default for p in DECLARED}
