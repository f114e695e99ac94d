"""The training loop and what it needs: the step and its guard, the schedules, compilation,
data parallelism and FactorVAE's critic. A run folder's life around it is :mod:`vaelab.runs`.

- ``loop``: :func:`fit`, read top to bottom, and :func:`train_step`;
- ``guard``: the finite check and the step it guards, the bad-step count;
- ``schedules``: the learning rate and the KL weight over a run;
- ``compiled``: the objective through ``torch.compile``, when it pays;
- ``distributed``: DDP, each rank's share of a batch and its noise;
- ``critic``: FactorVAE's discriminator and its optimizer.
"""
