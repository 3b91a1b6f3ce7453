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
#   backbone, input, parameter, mean, sd, q025, q50, q975, rhat, ess_bulk
# Parameters: mu, nu (logit Se, logit Sp), var1, var2, rho, se, sp (= inv_logit(mu/nu)),
#   lr_pos, lr_neg, dor, cor_mu_nu (posterior correlation of mu and nu; mean only),
#   logit_se_new, logit_sp_new (posterior predictive of a new study), cor_new (their
#   correlation; mean only), se_<study>, sp_<study> (fitted study-level Se/Sp; <study> is
#   "fold<k>" when the input has a fold column, else "study<i>"); engine stan only:
#   n_divergent, n_draws (divergent transitions after warmup and post-warmup draws, in
#   the mean column; divergences are reported, not an error: see the log's warning),
#   converged (1, or 0 when the R-hat/ESS checks failed and stop_on_failure = FALSE).

m4d_default_priors <- function() {
  list(
    var_shape = 0.25, var_rate = 0.025,   # InvGamma on var1 and var2 (meta4diag var.par)
    cor_mean = 0, cor_variance = 5,       # Normal on log((1+rho)/(1-rho)) (meta4diag cor.par)
    fixed_sd = sqrt(1000)                 # mu, nu ~ N(0, precision 0.001) (INLA default)
  )
}

meta_analysis_defaults <- function() {
  list(engine = "stan", iter = 4000L, warmup = 1000L, chains = 4L, seed = 1L,
       rhat_max = 1.01, ess_min = 400, adapt_delta = 0.99)
}

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
compiled_bivariate_model <- function(stan_file = default_stan_file(), cache_dir = stan_cache_dir()) {
  if (!requireNamespace("rstan", quietly = TRUE)) {
    stop("engine 'stan' needs the R package rstan (Debian: apt-get install r-cran-rstan)")
  }
  key <- sprintf("%s-rstan%s.rds", unname(tools::md5sum(stan_file)),
                 as.character(utils::packageVersion("rstan")))
  cache_file <- file.path(cache_dir, key)
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
    model <- rstan::stan_model(file = stan_file, model_name = "bivariate_dta", save_dso = TRUE)
    dir.create(cache_dir, recursive = TRUE, showWarnings = FALSE)
    partial <- tempfile(tmpdir = cache_dir, fileext = ".part")
    saveRDS(model, partial)
    file.rename(partial, cache_file)  # atomic: parallel runs never read half a file
  }
  assign(cache_file, model, envir = .spinedx_models)
  model
}

# Counts of one meta-analysis as integer vectors; stops on what no model can use.
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
  if (n < 2) stop(sprintf("%s: a meta-analysis needs at least 2 studies (folds), got %d", label, n))
  n_pos <- counts$tp + counts$fn
  n_neg <- counts$tn + counts$fp
  if (all(n_pos == 0)) stop(sprintf("%s: no study has a diseased case (tp + fn == 0 everywhere); Se cannot be estimated", label))
  if (all(n_neg == 0)) stop(sprintf("%s: no study has a non-diseased case (tn + fp == 0 everywhere); Sp cannot be estimated", label))
  study <- if ("fold" %in% names(data)) paste0("fold", data$fold) else paste0("study", seq_len(n))
  if (anyDuplicated(study)) stop(sprintf("%s: duplicated studies %s", label, paste(unique(study[duplicated(study)]), collapse = ", ")))
  c(counts, list(n_pos = n_pos, n_neg = n_neg, study = study, n = n))
}

.summary_row <- function(parameter, draws, rhat = NA_real_, ess = NA_real_) {
  q <- stats::quantile(draws, c(0.025, 0.5, 0.975), names = FALSE, na.rm = TRUE)
  data.frame(parameter = parameter, mean = mean(draws), sd = stats::sd(draws),
             q025 = q[1], q50 = q[2], q975 = q[3], rhat = rhat, ess_bulk = ess,
             stringsAsFactors = FALSE)
}

.value_row <- function(parameter, value) {
  data.frame(parameter = parameter, mean = value, sd = NA_real_, q025 = NA_real_,
             q50 = NA_real_, q975 = NA_real_, rhat = NA_real_, ess_bulk = NA_real_,
             stringsAsFactors = FALSE)
}

# One bivariate fit with Stan. Returns list(table, diagnostics); stops (with advice) when
# sampling fails or the convergence checks fail.
fit_bivariate_stan <- function(counts, label = "meta-analysis", iter = 4000L, warmup = 1000L,
                               chains = 4L, seed = 1L, adapt_delta = 0.99, rhat_max = 1.01,
                               ess_min = 400, priors = m4d_default_priors(),
                               stan_file = default_stan_file(), cache_dir = stan_cache_dir(),
                               stop_on_failure = TRUE) {
  iter <- as.integer(iter); warmup <- as.integer(warmup); chains <- as.integer(chains)
  if (warmup >= iter) stop(sprintf("%s: warmup (%d) must be smaller than iter (%d)", label, warmup, iter))
  model <- compiled_bivariate_model(stan_file, cache_dir)
  stan_data <- c(list(N = counts$n, n_pos = counts$n_pos, n_neg = counts$n_neg,
                      tp = counts$tp, tn = counts$tn), priors)
  messages <- character()
  fit <- withCallingHandlers(
    rstan::sampling(model, data = stan_data, iter = iter, warmup = warmup, chains = chains,
                    seed = as.integer(seed), cores = 1L, refresh = 0, open_progress = FALSE,
                    control = list(adapt_delta = adapt_delta), show_messages = FALSE),
    warning = function(w) { messages <<- c(messages, conditionMessage(w)); invokeRestart("muffleWarning") })
  if (fit@mode != 0L || length(fit@sim) == 0L || is.null(fit@sim$samples)) {
    stop(sprintf("%s: Stan sampling failed (%s). Check the 2x2 counts of this input.",
                 label, paste(c(messages, "no draws"), collapse = "; ")))
  }
  draws <- as.array(fit)  # iterations x chains x parameters
  param <- function(name) draws[, , name, drop = TRUE]
  as_matrix <- function(name) {
    x <- draws[, , name, drop = FALSE]
    matrix(x, nrow = dim(x)[1], ncol = dim(x)[2])
  }
  summarise <- function(out_name, stan_name) {
    m <- as_matrix(stan_name)
    .summary_row(out_name, as.vector(m), rstan::Rhat(m), rstan::ess_bulk(m))
  }
  main <- c(mu = "mu", nu = "nu", var1 = "var1", var2 = "var2", rho = "rho", se = "se",
            sp = "sp", lr_pos = "lr_pos", lr_neg = "lr_neg", dor = "dor")
  rows <- Map(summarise, names(main), main)
  mu <- as.vector(param("mu")); nu <- as.vector(param("nu"))
  rows <- c(rows, list(.value_row("cor_mu_nu", stats::cor(mu, nu)),
                       summarise("logit_se_new", "logit_se_new"),
                       summarise("logit_sp_new", "logit_sp_new"),
                       .value_row("cor_new", stats::cor(as.vector(param("logit_se_new")),
                                                        as.vector(param("logit_sp_new"))))))
  for (i in seq_len(counts$n)) rows[[length(rows) + 1]] <- summarise(paste0("se_", counts$study[i]), sprintf("se_study[%d]", i))
  for (i in seq_len(counts$n)) rows[[length(rows) + 1]] <- summarise(paste0("sp_", counts$study[i]), sprintf("sp_study[%d]", i))
  sampler <- rstan::get_sampler_params(fit, inc_warmup = FALSE)
  divergent <- sum(vapply(sampler, function(s) sum(s[, "divergent__"]), numeric(1)))
  max_depth <- sum(vapply(sampler, function(s) sum(s[, "treedepth__"] >= 10), numeric(1)))
  # Reported in the table (mean column) so a reader sees them next to the estimates.
  rows <- c(rows, list(.value_row("n_divergent", divergent), .value_row("n_draws", dim(draws)[1] * dim(draws)[2])))
  table <- do.call(rbind, rows)
  rownames(table) <- NULL
  converged <- TRUE
  # Convergence is judged on the model parameters (not the generated quantities).
  checked <- table[table$parameter %in% c("mu", "nu", "var1", "var2", "rho"), ]
  bad_rhat <- checked$parameter[!is.finite(checked$rhat) | checked$rhat > rhat_max]
  bad_ess <- checked$parameter[!is.finite(checked$ess_bulk) | checked$ess_bulk < ess_min]
  diagnostics <- list(divergent = divergent, max_treedepth_hits = max_depth,
                      draws = dim(draws)[1] * dim(draws)[2],
                      max_rhat = max(checked$rhat), min_ess_bulk = min(checked$ess_bulk),
                      stan_messages = unique(messages))
  if (length(bad_rhat) || length(bad_ess)) {
    problems <- c(
      if (length(bad_rhat)) sprintf("R-hat > %g for %s (max %.3f)", rhat_max,
                                    paste(bad_rhat, collapse = ", "), max(checked$rhat)),
      if (length(bad_ess)) sprintf("bulk ESS < %g for %s (min %.0f)", ess_min,
                                   paste(bad_ess, collapse = ", "), min(checked$ess_bulk)))
    problem <- sprintf(paste0("%s: the MCMC did not converge: %s (%d divergent transitions in %d draws). ",
                              "Advice: raise meta_analysis.iter (and warmup) or chains, raise ",
                              "meta_analysis.adapt_delta towards 0.999, or inspect this input's 2x2 ",
                              "tables for a degenerate pattern (e.g. Se or Sp of 0 or 1 in every fold); ",
                              "do not use these numbers."),
                       label, paste(problems, collapse = "; "), divergent, diagnostics$draws)
    if (stop_on_failure) stop(problem)
    message("NOT CONVERGED (kept because on_nonconvergence = flag): ", problem)
    converged <- FALSE
  }
  table <- rbind(table, .value_row("converged", as.numeric(converged)))
  diagnostics$converged <- converged
  list(table = table, diagnostics = diagnostics)
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
             rhat = NA_real_, ess_bulk = NA_real_, stringsAsFactors = FALSE)
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
                          rhat_max = 1.01, ess_min = 400, stan_file = default_stan_file(),
                          cache_dir = stan_cache_dir(), stop_on_failure = TRUE) {
  counts <- check_counts(data, label)
  engine <- resolve_engine(engine)
  if (engine == "meta4diag") {
    fit_bivariate_meta4diag(counts, label, seed = seed)
  } else {
    fit_bivariate_stan(counts, label, iter = iter, warmup = warmup, chains = chains, seed = seed,
                       adapt_delta = adapt_delta, rhat_max = rhat_max, ess_min = ess_min,
                       stan_file = stan_file, cache_dir = cache_dir, stop_on_failure = stop_on_failure)
  }
}

# All meta-analyses of a fold 2x2 table (columns backbone, input, fold, tp, fp, fn, tn; one
# row per backbone x input x fold): one fit per backbone x input, in table order.
meta_analysis_table <- function(fold_2x2, engine = "stan", iter = 4000L, warmup = 1000L,
                                chains = 4L, seed = 1L, adapt_delta = 0.99, rhat_max = 1.01,
                                ess_min = 400, stan_file = default_stan_file(),
                                cache_dir = stan_cache_dir(), verbose = TRUE,
                                stop_on_failure = TRUE) {
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
    fit <- fit_bivariate(rows, label, engine = engine, iter = iter, warmup = warmup, chains = chains,
                         seed = seed, adapt_delta = adapt_delta, rhat_max = rhat_max,
                         ess_min = ess_min, stan_file = stan_file, cache_dir = cache_dir,
                         stop_on_failure = stop_on_failure)
    if (verbose) {
      d <- fit$diagnostics
      message(sprintf("%s: fitted in %.1fs%s", label, proc.time()[["elapsed"]] - started,
                      if (!is.null(d$max_rhat)) sprintf(" (max R-hat %.4f, min bulk ESS %.0f, %d divergent)",
                                                        d$max_rhat, d$min_ess_bulk, d$divergent) else ""))
      if (!is.null(d$divergent) && d$divergent > 0) {
        message(sprintf("%s: warning: %d divergent transitions; consider raising adapt_delta", label, d$divergent))
      }
    }
    results[[g]] <- cbind(data.frame(backbone = backbone, input = input, stringsAsFactors = FALSE), fit$table)
  }
  out <- do.call(rbind, results)
  rownames(out) <- NULL
  out
}

# meta_analysis_table() that returns its error instead of raising it (for callers through
# rpy2: list(ok = TRUE, table = ...) or list(ok = FALSE, message = "...")).
meta_analysis_table_safely <- function(...) {
  tryCatch(list(ok = TRUE, table = meta_analysis_table(...)),
           error = function(e) list(ok = FALSE, message = conditionMessage(e)))
}
