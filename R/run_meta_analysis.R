#!/usr/bin/env Rscript
# Bivariate meta-analysis of the fold models' 2x2 tables, without Python or Snakemake:
#
#   Rscript R/run_meta_analysis.R fold_2x2.csv out_dir/ [--engine stan|meta4diag|auto]
#       [--iter N] [--warmup N] [--chains N] [--seed S] [--adapt-delta A]
#       [--rhat-max R] [--ess-min E] [--max-escalations K] [--on-nonconvergence flag|error]
#   Rscript R/run_meta_analysis.R --compile-only     (set-up: compile the Stan model into
#       the cache unless it is there; envs/setup.sh runs exactly this)
#
# fold_2x2.csv: columns backbone, input, fold, tp, fp, fn, tn (one row per backbone x
# input x fold; other columns are ignored). Writes out_dir/meta_analysis.csv (see
# R/meta_analysis.R for its columns). The compiled Stan model is cached under
# $SPINEDX_STAN_CACHE or ${XDG_CACHE_HOME:-~/.cache}/spinedx/stan.

main <- function(args) {
  usage <- paste("usage: Rscript R/run_meta_analysis.R fold_2x2.csv out_dir/ [--engine stan]",
                 "[--iter N] [--warmup N] [--chains N] [--seed S] [--adapt-delta A]",
                 "[--rhat-max R] [--ess-min E] [--max-escalations K] [--on-nonconvergence flag|error]",
                 "| --compile-only")
  script <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  here <- if (length(script)) dirname(normalizePath(script[1])) else "R"
  source(file.path(here, "meta_analysis.R"))
  settings <- meta_analysis_defaults()
  options <- c("--engine" = "engine", "--iter" = "iter", "--warmup" = "warmup",
               "--chains" = "chains", "--seed" = "seed", "--adapt-delta" = "adapt_delta",
               "--rhat-max" = "rhat_max", "--ess-min" = "ess_min",
               "--max-escalations" = "max_escalations", "--on-nonconvergence" = "on_nonconvergence")
  if (identical(args, "--compile-only")) {
    precompile_bivariate_model(file.path(here, "bivariate.stan"))
    return(invisible(0))
  }
  positional <- character()
  i <- 1
  while (i <= length(args)) {
    a <- args[i]
    if (a %in% c("-h", "--help")) { cat(usage, "\n"); return(invisible(0)) }
    if (startsWith(a, "--")) {
      parts <- strsplit(a, "=", fixed = TRUE)[[1]]
      name <- parts[1]
      if (!name %in% names(options)) stop(sprintf("unknown option %s\n%s", name, usage))
      value <- if (length(parts) > 1) paste(parts[-1], collapse = "=") else { i <- i + 1; args[i] }
      if (is.na(value)) stop(sprintf("option %s needs a value", name))
      key <- options[[name]]
      if (key %in% c("engine", "on_nonconvergence")) {
        settings[[key]] <- value
      } else {
        number <- suppressWarnings(as.numeric(value))
        if (is.na(number)) stop(sprintf("option %s needs a number, got %s", name, value))
        settings[[key]] <- number
      }
    } else {
      positional <- c(positional, a)
    }
    i <- i + 1
  }
  if (length(positional) != 2) stop(usage)
  fold_2x2 <- utils::read.csv(positional[1], stringsAsFactors = FALSE, check.names = FALSE)
  out_dir <- positional[2]
  table <- meta_analysis_table(fold_2x2, engine = settings$engine, iter = settings$iter,
                               warmup = settings$warmup, chains = settings$chains,
                               seed = settings$seed, adapt_delta = settings$adapt_delta,
                               rhat_max = settings$rhat_max, ess_min = settings$ess_min,
                               max_escalations = settings$max_escalations,
                               on_nonconvergence = settings$on_nonconvergence,
                               stan_file = file.path(here, "bivariate.stan"))
  dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
  out <- file.path(out_dir, "meta_analysis.csv")
  utils::write.csv(table, out, row.names = FALSE)
  message(sprintf("%d rows -> %s", nrow(table), out))
  verdicts <- unique(table[c("backbone", "input", "verdict")])
  flagged <- verdicts[grepl("^(NOT CONVERGED|not estimable)", verdicts$verdict), ]
  for (i in seq_len(nrow(flagged))) {
    message(sprintf("FLAGGED backbone %s, input %s: %s", flagged$backbone[i], flagged$input[i], flagged$verdict[i]))
  }
  invisible(0)
}

status <- tryCatch(main(commandArgs(trailingOnly = TRUE)), error = function(e) {
  message("run_meta_analysis: error: ", conditionMessage(e))
  1
})
quit(status = status, save = "no")
