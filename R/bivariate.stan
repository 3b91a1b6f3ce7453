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
// The random effects are non-centred (standard normals scaled by the Cholesky factor),
// which samples well when the between-study variance is near zero (few, similar folds).
//
// Syntax: Stan 2.21 (rstan 2.21.x, Debian 12) -- old array declarations on purpose.
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
parameters {
  real mu;
  real nu;
  real<lower=0> var1;
  real<lower=0> var2;
  real z;
  vector[N] e1;
  vector[N] e2;
}
transformed parameters {
  real<lower=-1, upper=1> rho = tanh(z / 2);
  vector[N] phi = sqrt(var1) * e1;
  vector[N] psi = sqrt(var2) * (rho * e1 + sqrt(1 - square(rho)) * e2);
}
model {
  mu ~ normal(0, fixed_sd);
  nu ~ normal(0, fixed_sd);
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
