import math

import torch

from m3l.engine.losses import PSNRLoss


def test_psnr_loss_is_the_negative_mean_psnr_per_image():
    target = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    output = target + torch.tensor([0.01, 0.05, 0.2]).view(3, 1, 1, 1) * torch.randn(3, 1, 16, 16)
    mse = ((output - target) ** 2).mean(dim=(1, 2, 3))
    psnr = [10 * math.log10(1 / m) for m in mse.tolist()]
    assert math.isclose(PSNRLoss()(output, target).item(), -sum(psnr) / 3, rel_tol=1e-5)


def test_psnr_loss_trains_towards_the_target():
    # Seeded, and with the cosine schedule NAFNet trains with: a constant-lr Adam jitters around
    # the optimum by about its lr, so the result would depend on the draw (and on test order).
    target = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    output = torch.zeros(2, 1, 8, 8, requires_grad=True)
    optimizer = torch.optim.Adam([output], lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
    for _ in range(100):
        optimizer.zero_grad()
        loss = PSNRLoss()(output, target)
        loss.backward()
        optimizer.step()
        schedule.step()
    assert (output - target).abs().max() < 0.01
    assert -PSNRLoss()(output, target).item() > 40
