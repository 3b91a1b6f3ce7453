# Bayesian bivariate meta-analysis of diagnostic accuracy (Se, Sp) across fold models.
#
# Plain R, no package needed beyond rstan (engine "stan") or meta4diag + INLA (engine
# "meta4diag"). Source this file and call meta_analysis_table(); R/run_meta_analysis.R is
# the command-line entry, and spinedx (Python) calls the same functions through rpy2.
#
# Model (meta4diag::meta4diag() defaults, model.type = 1, logit link), per study i:
#   TP_i ~ Binomial(TP_i + FN_i, Se_i), TN_i ~ Binomial(TN_i + FP_i, Sp_i)
#   logit Se_i = mu + phi_i, logit Sp_i = nu + psi_i, (phi_i, psi_i) ~ N2(0, Sigma)
#   var1, var2 ~ InvGamma(0.25, 0.025); log((1+rho)/(1-rho)) ~ N(0, variance 5);
#   mu, nu ~ N(0, precision 0.001).
#
# Output: one data frame, one row per backbone x input x parameter, columns
#   backbone, input, parameter, mean, sd, q025, q50, q975, rhat, ess_bulk, ess_tail, verdict
# Parameters: mu, nu (logit Se, logit Sp), var1, var2, rho, se, sp (= inv_logit(mu/nu)),
#   lr_pos, lr_neg, dor, cor_mu_nu (posterior correlation of mu and nu; mean only),
#   logit_se_new, logit_sp_new (posterior predictive of a new study), cor_new (their
#   correlation; mean only), se_<study>, sp_<study> (fitted study-level Se/Sp; <study> is
#   "fold<k>" when the input has a fold column, else "study<i>"); then the verdict, value in
#   the mean column (engine stan): converged (1 = trustworthy by convergence_verdict(), 0 =
#   not), estimable (0 when no model can be fitted: every estimate is then NA), max_rhat,
#   min_ess_bulk, min_ess_tail (over mu, nu, var1, var2, rho), n_divergent (divergent
#   transitions after warmup), n_draws, ladder_step (0 = the settings as given; see
#   ladder_settings()), adapt_delta (of that step). `verdict` repeats the outcome in words
#   on every row of the fit ("converged", "NOT CONVERGED: <failed criteria>",
#   "not estimable: <reason>"), so a reader of any row sees it.
#
# Convergence (one rule, convergence_verdict(); Python only reads its result): a fit is
# trustworthy iff, for mu, nu, var1, var2 and rho, the rank-normalised split R-hat <=
# rhat_max (1.01) and the bulk ESS and tail ESS >= ess_min (400), and no transition after
# warmup diverged. A fit failing it is refitted up the ladder (longer warmup, higher
# adapt_delta, more draws when ESS/R-hat failed) up to max_escalations times (fewer when
# over 1% of transitions diverge: see LADDER_FUTILE_DIVERGENT_FRACTION); what still
# fails follows on_nonconvergence: "flag" keeps the numbers with converged = 0, "error" stops.

m4d_default_priors <- function() {
  list(
    var_shape = 0.25, var_rate = 0.025,   # InvGamma on var1 and var2 (meta4diag var.par)
    cor_mean = 0, cor_variance = 5,       # Normal on log((1+rho)/(1-rho)) (meta4diag cor.par)
    fixed_sd = sqrt(1000)                 # mu, nu ~ N(0, precision 0.001) (INLA default)
  )
}

meta_analysis_defaults <- function() {
  list(engine = "stan", iter = 4000L, warmup = 1000L, chains = 4L, seed = 1L,
       rhat_max = 1.01, ess_min = 400, adapt_delta = 0.99, max_escalations = 2L,
       on_nonconvergence = "flag")
}

# The parameters the convergence verdict is judged on (the model's, not derived ones).
CONVERGENCE_PARAMETERS <- c("mu", "nu", "var1", "var2", "rho")

# The ladder stops early when a step ends with more than this fraction of divergent
# transitions: divergences in the hundreds come from a region (a variance in the hundreds
# or more under the heavy-tailed InvGamma prior while folds sit at Se or Sp = 1) that no
# adapt_delta tried here lets the sampler enter; on the benchmark grid no fit with that
# many reached zero at a later step, and the steps cost minutes (benchmarks/RESULTS.md).
LADDER_FUTILE_DIVERGENT_FRACTION <- 0.01

.spinedx_here <- local({
  # The directory of this file when sourced (to find bivariate.stan next to it).
  frame_files <- Filter(Negate(is.null), lapply(sys.frames(), function(f) f$ofile))
  if (length(frame_files)) dirname(normalizePath(frame_files[[length(frame_files)]])) else NULL
})

default_stan_file <- function() {
  here <- get0(".spinedx_here", ifnotfound = NULL)
  candidates <- c(if (!is.null(here)) file.path(here, "bivariate.stan"),
                  file.path("R", "bivariate.stan"))
  found <- candidates[file.exists(candidates)]
  if (!length(found)) stop("bivariate.stan not found; pass stan_file= explicitly")
  normalizePath(found[[1]])
}

stan_cache_dir <- function() {
  explicit <- Sys.getenv("SPINEDX_STAN_CACHE", "")
  if (nzchar(explicit)) return(explicit)
  xdg <- Sys.getenv("XDG_CACHE_HOME", "")
  if (!nzchar(xdg)) xdg <- file.path(path.expand("~"), ".cache")
  file.path(xdg, "spinedx", "stan")
}

# Models compiled (or read) in this R session, by cache file.
.spinedx_models <- new.env(parent = emptyenv())

# The compiled Stan model, built once per (Stan program, rstan version) and kept as
# <cache_dir>/<md5 of the .stan file>-rstan<version>.rds for later runs.
compiled_bivariate_model <- function(stan_file = default_stan_file(), cache_dir = stan_cache_dir(),
                                     verbose = TRUE) {
  if (!requireNamespace("rstan", quietly = TRUE)) {
    stop("engine 'stan' needs the R package rstan (Debian: apt-get install r-cran-rstan)")
  }
  cache_file <- compiled_model_file(stan_file, cache_dir)
  if (!is.null(.spinedx_models[[cache_file]])) return(.spinedx_models[[cache_file]])
  model <- NULL
  if (file.exists(cache_file)) {
    model <- tryCatch(readRDS(cache_file), error = function(e) NULL)
    if (!is.null(model) && !methods::is(model, "stanmodel")) model <- NULL
  }
  if (is.null(model)) {
    # Debian's R (r-cran-rstan) finds its Boost headers only when told; other installs
    # (CRAN, conda) bring their own through the BH package and are left alone.
    if (startsWith(R.home(), "/usr/lib/R") && dir.exists("/usr/include/boost")) {
      rstan::rstan_options(boost_lib = "/usr/include")
    }
    if (verbose) message(sprintf("Stan model: compiling %s (once per machine, about 45 s) -> %s",
                                 basename(stan_file), cache_file))
    model <- rstan::stan_model(file = stan_file, model_name = "bivariate_dta", save_dso = TRUE)
    dir.create(cache_dir, recursive = TRUE, showWarnings = FALSE)
    partial <- tempfile(tmpdir = cache_dir, fileext = ".part")
    saveRDS(model, partial)
    file.rename(partial, cache_file)  # atomic: parallel runs never read half a file
  }
  assign(cache_file, model, envir = .spinedx_models)
  model
}

# Where the compiled model of `stan_file` is cached: one file per (Stan program, rstan version).
compiled_model_file <- function(stan_file = default_stan_file(), cache_dir = stan_cache_dir()) {
  key <- sprintf("%s-rstan%s.rds", unname(tools::md5sum(stan_file)),
                 as.character(utils::packageVersion("rstan")))
  file.path(cache_dir, key)
}

# Set-up step (envs/setup.sh runs `Rscript R/run_meta_analysis.R --compile-only`): compile
# the model into the cache unless it is there already, so that the first study run does
# not pay the compile. Idempotent; says what it did. Returns the cache file.
precompile_bivariate_model <- function(stan_file = default_stan_file(), cache_dir = stan_cache_dir()) {
  cache_file <- compiled_model_file(stan_file, cache_dir)
  if (file.exists(cache_file)) {
    model <- tryCatch(readRDS(cache_file), error = function(e) NULL)
    if (methods::is(model, "stanmodel")) {
      message(sprintf("Stan model: already compiled (%s)", cache_file))
      return(invisible(cache_file))
    }
  }
  started <- proc.time()[["elapsed"]]
  compiled_bivariate_model(stan_file, cache_dir)
  message(sprintf("Stan model: compiled in %.0f s (%s)", proc.time()[["elapsed"]] - started, cache_file))
  invisible(cache_file)
}

# The error of an input no model can be fitted to (too few studies, no diseased or no
# non-diseased case anywhere, Stan unable to sample): under on_nonconvergence = "flag" it
# becomes a "not estimable" row set instead of stopping the study.
not_estimable <- function(message) {
  structure(class = c("spinedx_not_estimable", "error", "condition"),
            list(message = message, call = NULL))
}

# Study names of one meta-analysis: "fold<k>" from a fold column, else "study<i>".
study_names <- function(data) {
  names(data) <- tolower(names(data))
  if ("fold" %in% names(data)) paste0("fold", data$fold) else paste0("study", seq_len(nrow(data)))
}

# Counts of one meta-analysis as integer vectors; stops on what no model can use (a
# not_estimable() condition when the numbers are valid but cannot inform the model).
check_counts <- function(data, label) {
  names(data) <- tolower(names(data))
  missing <- setdiff(c("tp", "fp", "fn", "tn"), names(data))
  if (length(missing)) stop(sprintf("%s: missing column(s) %s", label, paste(missing, collapse = ", ")))
  counts <- lapply(data[c("tp", "fp", "fn", "tn")], function(x) suppressWarnings(as.numeric(x)))
  for (name in names(counts)) {
    x <- counts[[name]]
    if (anyNA(x) || any(x < 0) || any(x != round(x))) {
      stop(sprintf("%s: column %s must hold non-negative whole numbers, got %s", label, name,
                   paste(utils::head(data[[name]], 10), collapse = ", ")))
    }
  }
  counts <- lapply(counts, as.integer)
  n <- length(counts$tp)
  if (n < 2) stop(not_estimable(sprintf("%s: a meta-analysis needs at least 2 studies (folds), got %d", label, n)))
  n_pos <- counts$tp + counts$fn
  n_neg <- counts$tn + counts$fp
  if (all(n_pos == 0)) stop(not_estimable(sprintf("%s: no study has a diseased case (tp + fn == 0 everywhere); Se cannot be estimated", label)))
  if (all(n_neg == 0)) stop(not_estimable(sprintf("%s: no study has a non-diseased case (tn + fp == 0 everywhere); Sp cannot be estimated", label)))
  study <- study_names(data)
  if (anyDuplicated(study)) stop(sprintf("%s: duplicated studies %s", label, paste(unique(study[duplicated(study)]), collapse = ", ")))
  c(counts, list(n_pos = n_pos, n_neg = n_neg, study = study, n = n))
}

.summary_row <- function(parameter, draws, rhat = NA_real_, ess = NA_real_, ess_tail = NA_real_) {
  q <- stats::quantile(draws, c(0.025, 0.5, 0.975), names = FALSE, na.rm = TRUE)
  data.frame(parameter = parameter, mean = mean(draws), sd = stats::sd(draws),
             q025 = q[1], q50 = q[2], q975 = q[3], rhat = rhat, ess_bulk = ess,
             ess_tail = ess_tail, stringsAsFactors = FALSE)
}

.value_row <- function(parameter, value) {
  data.frame(parameter = parameter, mean = value, sd = NA_real_, q025 = NA_real_,
             q50 = NA_real_, q975 = NA_real_, rhat = NA_real_, ess_bulk = NA_real_,
             ess_tail = NA_real_, stringsAsFactors = FALSE)
}

# THE convergence rule (the only one: the Python side reads its result from the table).
# `checked`: rows of the convergence parameters with columns parameter, rhat, ess_bulk,
# ess_tail; `divergent`: divergent transitions after warmup. Trustworthy iff
#   max R-hat <= rhat_max  AND  min bulk ESS >= ess_min  AND  min tail ESS >= ess_min
#   AND  no divergent transition.
# R-hat is rstan's rank-normalised split R-hat (Vehtari et al. 2021), which also catches
# chains that disagree in scale; tail ESS guards the 95% intervals the study reports; a
# divergence means a region of the posterior the sampler could not enter, so the draws may
# be biased however good R-hat looks (Stan's guidance: none are acceptable). A non-finite
# diagnostic fails its criterion.
convergence_verdict <- function(checked, divergent, rhat_max = 1.01, ess_min = 400) {
  bad <- function(values, fails) checked$parameter[!is.finite(values) | fails(values)]
  bad_rhat <- bad(checked$rhat, function(x) x > rhat_max)
  bad_bulk <- bad(checked$ess_bulk, function(x) x < ess_min)
  bad_tail <- bad(checked$ess_tail, function(x) x < ess_min)
  worst <- function(values, f) if (all(is.finite(values))) f(values) else NA_real_
  max_rhat <- worst(checked$rhat, max)
  min_bulk <- worst(checked$ess_bulk, min)
  min_tail <- worst(checked$ess_tail, min)
  reasons <- as.character(c(
    if (length(bad_rhat)) sprintf("R-hat > %g for %s (max %.3f)", rhat_max, paste(bad_rhat, collapse = ", "), max_rhat),
    if (length(bad_bulk)) sprintf("bulk ESS < %g for %s (min %.0f)", ess_min, paste(bad_bulk, collapse = ", "), min_bulk),
    if (length(bad_tail)) sprintf("tail ESS < %g for %s (min %.0f)", ess_min, paste(bad_tail, collapse = ", "), min_tail),
    if (!is.finite(divergent) || divergent > 0) sprintf("%s divergent transitions after warmup", format(divergent))))
  list(converged = length(reasons) == 0, reasons = reasons,
       failed = c(rhat = length(bad_rhat) > 0, ess = length(bad_bulk) + length(bad_tail) > 0,
                  divergent = !is.finite(divergent) || divergent > 0),
       max_rhat = max_rhat, min_ess_bulk = min_bulk, min_ess_tail = min_tail, divergent = divergent)
}

# Sampler settings of ladder step `step` (0 = as configured). Each escalation doubles the
# warmup (better step size and metric adaptation) and moves adapt_delta a decade closer
# to 1 (0.99 -> 0.999 -> 0.9999: smaller steps, which is what removes divergences); the
# post-warmup draws double only when the step before failed on R-hat or ESS (more draws
# cannot cure divergences but give them more chances to occur).
ladder_settings <- function(step, iter, warmup, adapt_delta, previous = NULL) {
  draws <- if (is.null(previous)) iter - warmup else previous$draws
  if (!is.null(previous) && (previous$failed[["rhat"]] || previous$failed[["ess"]])) draws <- draws * 2L
  warmup <- as.integer(warmup * 2^step)
  list(step = step, warmup = warmup, iter = as.integer(warmup + draws), draws = as.integer(draws),
       adapt_delta = 1 - (1 - adapt_delta) / 10^step)
}

# One run of the sampler; returns the stanfit, or stops with not_estimable() when Stan
# cannot sample at all.
.sample_stan <- function(model, stan_data, run, chains, seed, label) {
  messages <- character()
  fit <- tryCatch(withCallingHandlers(
    rstan::sampling(model, data = stan_data, iter = run$iter, warmup = run$warmup, chains = chains,
                    seed = as.integer(seed), cores = 1L, refresh = 0, open_progress = FALSE,
                    control = list(adapt_delta = run$adapt_delta), show_messages = FALSE),
    warning = function(w) { messages <<- c(messages, conditionMessage(w)); invokeRestart("muffleWarning") }),
    error = function(e) stop(not_estimable(sprintf("%s: Stan sampling failed (%s). Check the 2x2 counts of this input.",
                                                   label, conditionMessage(e)))))
  if (fit@mode != 0L || length(fit@sim) == 0L || is.null(fit@sim$samples)) {
    stop(not_estimable(sprintf("%s: Stan sampling failed (%s). Check the 2x2 counts of this input.",
                               label, paste(c(messages, "no draws"), collapse = "; "))))
  }
  fit
}

# Posterior summary table of one stanfit (estimates only) and its divergences and draws.
.summarise_stan <- function(fit, counts) {
  draws <- as.array(fit)  # iterations x chains x parameters
  as_matrix <- function(name) {
    x <- draws[, , name, drop = FALSE]
    matrix(x, nrow = dim(x)[1], ncol = dim(x)[2])
  }
  summarise <- function(out_name, stan_name) {
    m <- as_matrix(stan_name)
    .summary_row(out_name, as.vector(m), rstan::Rhat(m), rstan::ess_bulk(m), rstan::ess_tail(m))
  }
  main <- c(mu = "mu", nu = "nu", var1 = "var1", var2 = "var2", rho = "rho", se = "se",
            sp = "sp", lr_pos = "lr_pos", lr_neg = "lr_neg", dor = "dor")
  rows <- Map(summarise, names(main), main)
  rows <- c(rows, list(.value_row("cor_mu_nu", stats::cor(as.vector(as_matrix("mu")), as.vector(as_matrix("nu")))),
                       summarise("logit_se_new", "logit_se_new"),
                       summarise("logit_sp_new", "logit_sp_new"),
                       .value_row("cor_new", stats::cor(as.vector(as_matrix("logit_se_new")),
                                                        as.vector(as_matrix("logit_sp_new"))))))
  for (i in seq_len(counts$n)) rows[[length(rows) + 1]] <- summarise(paste0("se_", counts$study[i]), sprintf("se_study[%d]", i))
  for (i in seq_len(counts$n)) rows[[length(rows) + 1]] <- summarise(paste0("sp_", counts$study[i]), sprintf("sp_study[%d]", i))
  table <- do.call(rbind, rows)
  rownames(table) <- NULL
  sampler <- rstan::get_sampler_params(fit, inc_warmup = FALSE)
  list(table = table,
       divergent = sum(vapply(sampler, function(s) sum(s[, "divergent__"]), numeric(1))),
       max_treedepth_hits = sum(vapply(sampler, function(s) sum(s[, "treedepth__"] >= 10), numeric(1))),
       draws = dim(draws)[1] * dim(draws)[2])
}

# The verdict rows appended to every fit's table (values in the mean column).
.verdict_rows <- function(converged, estimable, verdict = NULL, run = NULL, draws = NA_real_) {
  value <- function(x) if (is.null(x) || !length(x)) NA_real_ else as.numeric(x)
  rbind(.value_row("converged", as.numeric(converged)),
        .value_row("estimable", as.numeric(estimable)),
        .value_row("max_rhat", value(verdict$max_rhat)),
        .value_row("min_ess_bulk", value(verdict$min_ess_bulk)),
        .value_row("min_ess_tail", value(verdict$min_ess_tail)),
        .value_row("n_divergent", value(verdict$divergent)),
        .value_row("n_draws", value(draws)),
        .value_row("ladder_step", value(run$step)),
        .value_row("adapt_delta", value(run$adapt_delta)))
}

.run_text <- function(run, chains) {
  sprintf("%d chains, warmup %d, %d draws per chain, adapt_delta %s", chains, run$warmup, run$draws,
          format(run$adapt_delta, digits = 6))
}

# One bivariate fit with Stan, up the escalation ladder until convergence_verdict() passes
# or max_escalations refits are spent. Returns list(table, diagnostics); the table ends
# with the verdict rows and has a verdict column. A fit that still fails stops (with the
# failed criteria and the fix) when on_nonconvergence = "error", else is kept with
# converged = 0.
fit_bivariate_stan <- function(counts, label = "meta-analysis", iter = 4000L, warmup = 1000L,
                               chains = 4L, seed = 1L, adapt_delta = 0.99, rhat_max = 1.01,
                               ess_min = 400, max_escalations = 2L, on_nonconvergence = "flag",
                               priors = m4d_default_priors(), stan_file = default_stan_file(),
                               cache_dir = stan_cache_dir(), verbose = TRUE) {
  iter <- as.integer(iter); warmup <- as.integer(warmup); chains <- as.integer(chains)
  max_escalations <- as.integer(max_escalations)
  on_nonconvergence <- match.arg(on_nonconvergence, c("flag", "error"))
  if (warmup >= iter) stop(sprintf("%s: warmup (%d) must be smaller than iter (%d)", label, warmup, iter))
  if (is.na(max_escalations) || max_escalations < 0) stop(sprintf("%s: max_escalations must be >= 0", label))
  model <- compiled_bivariate_model(stan_file, cache_dir, verbose = verbose)
  stan_data <- c(list(N = counts$n, n_pos = counts$n_pos, n_neg = counts$n_neg,
                      tp = counts$tp, tn = counts$tn), priors)
  run <- NULL; verdict <- NULL; steps <- list()
  for (step in 0:max_escalations) {
    run <- ladder_settings(step, iter, warmup, adapt_delta, previous = if (step > 0) c(run, list(failed = verdict$failed)))
    started <- proc.time()[["elapsed"]]
    fit <- .sample_stan(model, stan_data, run, chains, seed, label)
    summary <- .summarise_stan(fit, counts)
    verdict <- convergence_verdict(summary$table[summary$table$parameter %in% CONVERGENCE_PARAMETERS, ],
                                   summary$divergent, rhat_max, ess_min)
    seconds <- proc.time()[["elapsed"]] - started
    steps[[length(steps) + 1]] <- list(step = step, seconds = seconds, converged = verdict$converged,
                                       max_rhat = verdict$max_rhat, min_ess_bulk = verdict$min_ess_bulk,
                                       min_ess_tail = verdict$min_ess_tail, divergent = summary$divergent)
    if (verbose) {
      message(sprintf("%s: ladder step %d (%s): %s in %.1f s (max R-hat %.4f, min bulk ESS %.0f, min tail ESS %.0f, %s divergent)",
                      label, step, .run_text(run, chains), if (verdict$converged) "converged" else "not converged",
                      seconds, verdict$max_rhat, verdict$min_ess_bulk, verdict$min_ess_tail, format(summary$divergent)))
    }
    if (verdict$converged) break
    if (summary$divergent > LADDER_FUTILE_DIVERGENT_FRACTION * summary$draws && step < max_escalations) {
      if (verbose) message(sprintf("%s: ladder stopped: %s divergent transitions in %d draws (over %g%%) do not go away with a higher adapt_delta",
                                   label, format(summary$divergent), summary$draws, 100 * LADDER_FUTILE_DIVERGENT_FRACTION))
      break
    }
  }
  text <- if (verdict$converged) "converged" else paste("NOT CONVERGED:", paste(verdict$reasons, collapse = "; "))
  if (!verdict$converged) {
    problem <- sprintf(paste0(
      "%s: the MCMC did not converge after %d ladder step(s) (last: %s): %s. ",
      "Fix: set meta_analysis.on_nonconvergence: flag to keep the study going with these numbers ",
      "marked converged = 0, or raise meta_analysis.max_escalations (or iter, warmup, chains), ",
      "or inspect this input's fold 2x2 tables for a degenerate pattern (Se or Sp of 0 or 1 in ",
      "most folds, tiny folds); do not use these numbers as they are."),
      label, run$step + 1L, .run_text(run, chains), paste(verdict$reasons, collapse = "; "))
    if (on_nonconvergence == "error") stop(problem)
    message("NOT CONVERGED (kept, flagged converged = 0, because on_nonconvergence = flag): ", problem)
  }
  table <- rbind(summary$table, .verdict_rows(verdict$converged, TRUE, verdict, run, summary$draws))
  table$verdict <- text
  list(table = table,
       diagnostics = list(converged = verdict$converged, divergent = summary$divergent,
                          max_treedepth_hits = summary$max_treedepth_hits, draws = summary$draws,
                          max_rhat = verdict$max_rhat, min_ess_bulk = verdict$min_ess_bulk,
                          min_ess_tail = verdict$min_ess_tail, ladder_step = run$step,
                          reasons = verdict$reasons, steps = steps, verdict = text))
}

# The table of an input no model can be fitted to: the parameter rows of a fit, every
# estimate NA, converged = 0, estimable = 0, and the reason in the verdict column.
not_estimable_fit <- function(data, reason) {
  study <- study_names(data)
  names <- c("mu", "nu", "var1", "var2", "rho", "se", "sp", "lr_pos", "lr_neg", "dor", "cor_mu_nu",
             "logit_se_new", "logit_sp_new", "cor_new", paste0("se_", study), paste0("sp_", study))
  table <- rbind(do.call(rbind, lapply(names, .value_row, value = NA_real_)), .verdict_rows(FALSE, FALSE))
  rownames(table) <- NULL
  table$verdict <- paste("not estimable:", reason)
  list(table = table, diagnostics = list(converged = FALSE, estimable = FALSE, verdict = table$verdict[1]))
}

.pick <- function(mat, row, fallback_index) {
  # One summary row of an INLA/meta4diag summary matrix as mean, sd, q025, q50, q975.
  mat <- as.matrix(mat)
  r <- if (!is.null(rownames(mat)) && row %in% rownames(mat)) row else fallback_index
  cols <- colnames(mat)
  q <- function(p, pos) {
    hit <- which(cols == paste0(p, "quant"))
    if (length(hit)) mat[r, hit[1]] else mat[r, pos]
  }
  c(mean = unname(mat[r, 1]), sd = unname(mat[r, 2]), q025 = unname(q("0.025", 3)),
    q50 = unname(q("0.5", 4)), q975 = unname(q("0.975", 5)))
}

.row_from <- function(parameter, values) {
  data.frame(parameter = parameter, mean = values[["mean"]], sd = values[["sd"]],
             q025 = values[["q025"]], q50 = values[["q50"]], q975 = values[["q975"]],
             rhat = NA_real_, ess_bulk = NA_real_, ess_tail = NA_real_, stringsAsFactors = FALSE)
}

# One bivariate fit with meta4diag (INLA), mapped to the same table as the Stan engine.
# UNTESTED in the spinedx environment (INLA and meta4diag are not installable there);
# written from meta4diag's documented interface (meta4diag(), makeObject()).
fit_bivariate_meta4diag <- function(counts, label = "meta-analysis", seed = 1L, nsample = 10000L,
                                    priors = m4d_default_priors()) {
  if (!requireNamespace("INLA", quietly = TRUE) || !requireNamespace("meta4diag", quietly = TRUE)) {
    stop("engine 'meta4diag' needs the R packages INLA and meta4diag; use engine 'stan' instead")
  }
  # meta4diag() insists on INLA being attached (it checks search()).
  if (!"package:INLA" %in% search()) suppressPackageStartupMessages(attachNamespace("INLA"))
  if (priors$fixed_sd != sqrt(1000)) warning("meta4diag always uses INLA's N(0, precision 0.001) on mu and nu")
  data <- data.frame(studynames = counts$study, TP = counts$tp, FP = counts$fp,
                     TN = counts$tn, FN = counts$fn)
  arguments <- list(data = data, model.type = 1, var.prior = "Invgamma", var2.prior = "Invgamma",
                    cor.prior = "Normal", var.par = c(priors$var_shape, priors$var_rate),
                    var2.par = c(priors$var_shape, priors$var_rate),
                    cor.par = c(priors$cor_mean, priors$cor_variance), link = "logit",
                    quantiles = c(0.025, 0.5, 0.975), verbose = FALSE, nsample = as.integer(nsample))
  if ("seed" %in% names(formals(meta4diag::meta4diag))) arguments$seed <- as.integer(seed)
  set.seed(seed)
  res <- tryCatch(do.call(meta4diag::meta4diag, arguments),
                  error = function(e) stop(sprintf("%s: meta4diag failed: %s", label, conditionMessage(e))))
  rows <- list(.row_from("mu", .pick(res$summary.fixed, "mu", 1)),
               .row_from("nu", .pick(res$summary.fixed, "nu", 2)),
               .row_from("var1", .pick(res$summary.hyperpar, "var_phi", 1)),
               .row_from("var2", .pick(res$summary.hyperpar, "var_psi", 2)),
               .row_from("rho", .pick(res$summary.hyperpar, "cor", 3)))
  fixed <- res$samples.fixed
  hyper <- res$samples.hyperpar
  if (!is.null(fixed) && !is.null(hyper)) {
    mu <- fixed[grep("mu", rownames(fixed))[1], ]
    nu <- fixed[grep("nu", rownames(fixed))[1], ]
    se <- stats::plogis(mu); sp <- stats::plogis(nu)
    rows <- c(rows, list(.summary_row("se", se), .summary_row("sp", sp),
                         .summary_row("lr_pos", se / (1 - sp)), .summary_row("lr_neg", (1 - se) / sp),
                         .summary_row("dor", (se / (1 - sp)) / ((1 - se) / sp)),
                         .value_row("cor_mu_nu", stats::cor(mu, nu))))
    v1 <- hyper[1, ]; v2 <- hyper[2, ]; r <- hyper[3, ]
    u1 <- stats::rnorm(length(mu)); u2 <- stats::rnorm(length(mu))
    se_new <- mu + sqrt(v1) * u1
    sp_new <- nu + sqrt(v2) * (r * u1 + sqrt(1 - r^2) * u2)
    rows <- c(rows, list(.summary_row("logit_se_new", se_new), .summary_row("logit_sp_new", sp_new),
                         .value_row("cor_new", stats::cor(se_new, sp_new))))
  } else {
    accuracy <- res$summary.expected.accuracy
    rows <- c(rows, list(.row_from("se", .pick(accuracy, "mean(Se)", 1)),
                         .row_from("sp", .pick(accuracy, "mean(Sp)", 2))))
  }
  fitted_se <- res[["summary.predictor.(Se)"]]
  fitted_sp <- res[["summary.predictor.(Sp)"]]
  if (!is.null(fitted_se) && !is.null(fitted_sp)) {
    for (i in seq_len(counts$n)) rows[[length(rows) + 1]] <- .row_from(paste0("se_", counts$study[i]), .pick(fitted_se, counts$study[i], i))
    for (i in seq_len(counts$n)) rows[[length(rows) + 1]] <- .row_from(paste0("sp_", counts$study[i]), .pick(fitted_sp, counts$study[i], i))
  }
  table <- do.call(rbind, rows)
  rownames(table) <- NULL
  # INLA is not MCMC: there is no R-hat, ESS or divergence to judge (no converged row).
  table <- rbind(table, .value_row("estimable", 1))
  table$verdict <- "INLA approximation (no MCMC diagnostics)"
  list(table = table, diagnostics = list(engine = "meta4diag", mlik = res$mlik))
}

meta4diag_available <- function() {
  requireNamespace("INLA", quietly = TRUE) && requireNamespace("meta4diag", quietly = TRUE)
}

resolve_engine <- function(engine) {
  engine <- match.arg(engine, c("stan", "meta4diag", "auto"))
  if (engine == "auto") engine <- if (meta4diag_available()) "meta4diag" else "stan"
  engine
}

# One meta-analysis (one set of studies); `label` names it in every error message.
fit_bivariate <- function(data, label = "meta-analysis", engine = "stan", iter = 4000L,
                          warmup = 1000L, chains = 4L, seed = 1L, adapt_delta = 0.99,
                          rhat_max = 1.01, ess_min = 400, max_escalations = 2L,
                          on_nonconvergence = "flag", stan_file = default_stan_file(),
                          cache_dir = stan_cache_dir(), verbose = TRUE) {
  counts <- check_counts(data, label)
  engine <- resolve_engine(engine)
  if (engine == "meta4diag") {
    fit_bivariate_meta4diag(counts, label, seed = seed)
  } else {
    fit_bivariate_stan(counts, label, iter = iter, warmup = warmup, chains = chains, seed = seed,
                       adapt_delta = adapt_delta, rhat_max = rhat_max, ess_min = ess_min,
                       max_escalations = max_escalations, on_nonconvergence = on_nonconvergence,
                       stan_file = stan_file, cache_dir = cache_dir, verbose = verbose)
  }
}

# All meta-analyses of a fold 2x2 table (columns backbone, input, fold, tp, fp, fn, tn; one
# row per backbone x input x fold): one fit per backbone x input, in table order. Under
# on_nonconvergence = "flag" no fit stops the others: a fit that does not converge is kept
# with converged = 0, an input no model can be fitted to gets not_estimable_fit() rows;
# "error" stops at the first of either. Malformed tables always stop.
meta_analysis_table <- function(fold_2x2, engine = "stan", iter = 4000L, warmup = 1000L,
                                chains = 4L, seed = 1L, adapt_delta = 0.99, rhat_max = 1.01,
                                ess_min = 400, max_escalations = 2L, on_nonconvergence = "flag",
                                stan_file = default_stan_file(), cache_dir = stan_cache_dir(),
                                verbose = TRUE) {
  on_nonconvergence <- match.arg(on_nonconvergence, c("flag", "error"))
  fold_2x2 <- as.data.frame(fold_2x2, stringsAsFactors = FALSE)
  missing <- setdiff(c("backbone", "input"), names(fold_2x2))
  if (length(missing)) stop(sprintf("fold 2x2 table: missing column(s) %s", paste(missing, collapse = ", ")))
  if (nrow(fold_2x2) == 0) stop("fold 2x2 table: no rows")
  groups <- unique(fold_2x2[c("backbone", "input")])
  results <- vector("list", nrow(groups))
  for (g in seq_len(nrow(groups))) {
    backbone <- as.character(groups$backbone[g]); input <- as.character(groups$input[g])
    label <- sprintf("backbone %s, input %s", backbone, input)
    rows <- fold_2x2[fold_2x2$backbone == backbone & fold_2x2$input == input, , drop = FALSE]
    if ("fold" %in% names(rows)) rows <- rows[order(rows$fold), , drop = FALSE]
    started <- proc.time()[["elapsed"]]
    fit <- tryCatch(
      fit_bivariate(rows, label, engine = engine, iter = iter, warmup = warmup, chains = chains,
                    seed = seed, adapt_delta = adapt_delta, rhat_max = rhat_max, ess_min = ess_min,
                    max_escalations = max_escalations, on_nonconvergence = on_nonconvergence,
                    stan_file = stan_file, cache_dir = cache_dir, verbose = verbose),
      spinedx_not_estimable = function(e) {
        if (on_nonconvergence == "error") {
          stop(paste0(sub("\\.?$", ".", conditionMessage(e)), " Fix: correct this input's fold 2x2 tables, or set ",
                      "meta_analysis.on_nonconvergence: flag to report it as not estimable and ",
                      "finish the study."), call. = FALSE)
        }
        message("NOT ESTIMABLE (reported as such because on_nonconvergence = flag): ", conditionMessage(e))
        text <- conditionMessage(e)
        prefix <- paste0(label, ": ")
        reason <- if (startsWith(text, prefix)) substring(text, nchar(prefix) + 1) else text
        not_estimable_fit(rows, reason)
      })
    if (verbose) {
      message(sprintf("%s: %s (%.1f s)", label, fit$diagnostics$verdict %||% fit$table$verdict[1],
                      proc.time()[["elapsed"]] - started))
    }
    results[[g]] <- cbind(data.frame(backbone = backbone, input = input, stringsAsFactors = FALSE), fit$table)
  }
  out <- do.call(rbind, results)
  rownames(out) <- NULL
  out
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# meta_analysis_table() that returns its error instead of raising it (for callers through
# rpy2: list(ok = TRUE, table = ...) or list(ok = FALSE, message = "...")).
meta_analysis_table_safely <- function(...) {
  tryCatch(list(ok = TRUE, table = meta_analysis_table(...)),
           error = function(e) list(ok = FALSE, message = conditionMessage(e)))
}
