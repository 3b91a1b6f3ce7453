// Bivariate binomial-normal model for diagnostic test accuracy (Chu & Cole 2006),
// with exactly the default priors of meta4diag::meta4diag() (model.type = 1, logit link):
//
//   TP_i ~ Binomial(TP_i + FN_i, Se_i),  TN_i ~ Binomial(TN_i + FP_i, Sp_i)
//   logit(Se_i) = mu + phi_i,  logit(Sp_i) = nu + psi_i
//   (phi_i, psi_i) ~ N2(0, [var1, rho*sd1*sd2; rho*sd1*sd2, var2])
//   var1, var2 ~ InvGamma(shape 0.25, rate 0.025)   (INLA: precision ~ Gamma(0.25, 0.025))
//   z = log((1 + rho) / (1 - rho)) ~ Normal(0, variance 5)   (so rho = tanh(z / 2))
//   mu, nu ~ Normal(0, precision 0.001)                       (INLA's default fixed effects)
//
// The prior values come in as data (so they are visible in one place, R/meta_analysis.R).
//
// Parameterisation (the model and its posterior are the ones above; only the coordinates
// the sampler moves in are chosen for its geometry; README "Meta-analysis" has the
// measurements):
// - Random effects are non-centred: standard normals e1, e2 times the Cholesky factor of
//   the covariance (phi = sd1 e1, psi = sd2 (rho e1 + sqrt(1 - rho^2) e2)). This samples
//   well when the between-study variance is near zero (few, similar folds); a centred
//   version had 40-1200 divergent transitions on the issue-11 T2 table.
// - mu and nu are sampled as eta1, eta2: mu = c1 + scale1 * eta1 (likewise nu), with c1
//   the pooled logit of the data and scale1 = 1 / sqrt(sum_i 1 / (var1 + 1 / info1_i) +
//   1 / fixed_sd^2), the posterior sd of an inverse-variance pooled logit given var1
//   (info_i = n p (1 - p) of study i; a study at Se = 0 or 1, or without cases, has a
//   one-sided likelihood and counts 0; then the prior caps the scale). eta1's posterior
//   scale then no longer depends on var1. Without it, folds with Sp = 1 leave nu free over
//   a range proportional to sd2: a funnel in (nu, log var2) that non-centring the random
//   effects does not remove. The log Jacobian, log scale1 + log scale2, is in the model.
// Measured (README "Meta-analysis"; 11 hard fold tables x 3 seeds, default settings): the
// fits failing R-hat or ESS went from 4 of 33 to 1 of 33, the median of the minimum tail
// ESS from about 1750 to 3590; on the issue-11 T2 table (Sp = 1 in 4 of 5 folds) R-hat
// 1.011 -> 1.002, bulk/tail ESS 329/108 -> 2942/4131 (seed 1). Neither version removes the
// divergent transitions where the heavy-tailed InvGamma(0.25, 0.025) prior lets a variance
// reach hundreds or more while folds sit at Se or Sp = 0 or 1 (a one-sided likelihood).
//
// Syntax: Stan 2.21 (rstan 2.21.x, Debian 12) -- old array declarations on purpose.
functions {
  // Precision of an inverse-variance pooled logit: sum over studies of 1 / (var + 1 / info).
  real pooled_precision(vector info, real variance) {
    real total = 0;
    for (i in 1:num_elements(info)) {
      if (info[i] > 0) total += info[i] / (1 + variance * info[i]);
    }
    return total;
  }
}
data {
  int<lower=1> N;                 // studies (fold models)
  int<lower=0> n_pos[N];          // TP + FN (diseased); 0 is allowed (no information on Se)
  int<lower=0> n_neg[N];          // TN + FP (non-diseased)
  int<lower=0> tp[N];
  int<lower=0> tn[N];
  real<lower=0> var_shape;        // InvGamma shape (meta4diag var.par[1])
  real<lower=0> var_rate;         // InvGamma rate  (meta4diag var.par[2])
  real cor_mean;                  // Normal mean of z      (meta4diag cor.par[1])
  real<lower=0> cor_variance;     // Normal variance of z  (meta4diag cor.par[2])
  real<lower=0> fixed_sd;         // sd of the Normal prior on mu and nu
}
transformed data {
  // Centre and within-study information of mu and nu's coordinates (constants: any values
  // give the same posterior; these make eta1, eta2 about standard normal). A fold at Se or
  // Sp = 0 or 1 (or without cases) has a one-sided likelihood and counts as no information.
  real c1 = logit((sum(tp) + 0.5) / (sum(n_pos) + 1.0));
  real c2 = logit((sum(tn) + 0.5) / (sum(n_neg) + 1.0));
  vector[N] info1;
  vector[N] info2;
  for (i in 1:N) {
    info1[i] = (tp[i] > 0 && tp[i] < n_pos[i]) ? tp[i] * (n_pos[i] - tp[i]) * 1.0 / n_pos[i] : 0;
    info2[i] = (tn[i] > 0 && tn[i] < n_neg[i]) ? tn[i] * (n_neg[i] - tn[i]) * 1.0 / n_neg[i] : 0;
  }
}
parameters {
  real eta1;
  real eta2;
  real<lower=0> var1;
  real<lower=0> var2;
  real z;
  vector[N] e1;
  vector[N] e2;
}
transformed parameters {
  real scale1 = 1 / sqrt(pooled_precision(info1, var1) + 1 / square(fixed_sd));
  real scale2 = 1 / sqrt(pooled_precision(info2, var2) + 1 / square(fixed_sd));
  real mu = c1 + scale1 * eta1;
  real nu = c2 + scale2 * eta2;
  real<lower=-1, upper=1> rho = tanh(z / 2);
  vector[N] phi = sqrt(var1) * e1;
  vector[N] psi = sqrt(var2) * (rho * e1 + sqrt(1 - square(rho)) * e2);
}
model {
  // The priors are on mu and nu themselves, plus the Jacobian of (eta1, eta2) -> (mu, nu).
  target += normal_lpdf(mu | 0, fixed_sd) + normal_lpdf(nu | 0, fixed_sd);
  target += log(scale1) + log(scale2);
  var1 ~ inv_gamma(var_shape, var_rate);
  var2 ~ inv_gamma(var_shape, var_rate);
  z ~ normal(cor_mean, sqrt(cor_variance));
  e1 ~ std_normal();
  e2 ~ std_normal();
  tp ~ binomial_logit(n_pos, mu + phi);
  tn ~ binomial_logit(n_neg, nu + psi);
}
generated quantities {
  real se = inv_logit(mu);
  real sp = inv_logit(nu);
  real lr_pos = se / (1 - sp);
  real lr_neg = (1 - se) / sp;
  real dor = lr_pos / lr_neg;
  vector[N] se_study = inv_logit(mu + phi);
  vector[N] sp_study = inv_logit(nu + psi);
  // A new study's logit(Se), logit(Sp): the posterior predictive (95% prediction region).
  real logit_se_new;
  real logit_sp_new;
  {
    real u1 = normal_rng(0, 1);
    real u2 = normal_rng(0, 1);
    logit_se_new = mu + sqrt(var1) * u1;
    logit_sp_new = nu + sqrt(var2) * (rho * u1 + sqrt(1 - square(rho)) * u2);
  }
}
