#!/usr/bin/env python3
"""The PyTorch side of `cargo bench --bench models`: the same U-Net, VAE,
losses and gradient-guided step as nextslice's burn models, timed the same way.

Usage: models_torch.py CASES REPEAT THREADS [cpu|cuda[:N]] [default|no-tf32]
CASES are names like unet-train-128-b8 or demo-vae-train-64-b16 (kind, size, batch).
Prints one JSON object: {"torch": version, "threads": n, "device": d, "cases": {name: slices_per_second}}.
Architectures mirror src/model/{unet,vae,norm,loss}.rs exactly (layer for layer).
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def double_conv(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, cin, classes, widths=(32, 64, 128, 256), bottleneck=512):
        super().__init__()
        self.encoder = nn.ModuleList()
        c = cin
        for w in widths:
            self.encoder.append(double_conv(c, w))
            c = w
        self.bottleneck = double_conv(c, bottleneck)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        below = bottleneck
        for w in reversed(widths):
            self.up.append(nn.ConvTranspose2d(below, w, 2, stride=2))
            self.decoder.append(double_conv(2 * w, w))
            below = w
        self.head = nn.Conv2d(below, classes, 1)

    def forward(self, x):
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = block(torch.cat([up(x), skip], 1))
        return self.head(x)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, down):
        super().__init__()
        if down:
            self.resample = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        else:
            self.resample = nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False)
            self.shortcut = nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False)
        self.norm1 = nn.BatchNorm2d(cout)
        self.conv = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(cout)

    def forward(self, x):
        main = F.leaky_relu(self.norm1(self.resample(x)), 0.01)
        main = self.norm2(self.conv(main))
        return F.leaky_relu(main + self.shortcut(x), 0.01)


class Vae(nn.Module):
    def __init__(self, cin, size, widths=(32, 64, 128, 256), z=3):
        super().__init__()
        self.encoder = nn.ModuleList()
        c = cin
        for w in widths:
            self.encoder.append(ResBlock(c, w, True))
            c = w
        self.deepest = (c, size >> len(widths), size >> len(widths))
        flat = c * self.deepest[1] * self.deepest[2]
        self.to_mean = nn.Linear(flat, z)
        self.to_log_var = nn.Linear(flat, z)
        self.from_latent = nn.Linear(z, flat)
        self.decoder = nn.ModuleList()
        for w in list(reversed(widths))[1:] + [widths[0]]:
            self.decoder.append(ResBlock(c, w, False))
            c = w
        self.out = nn.Conv2d(c, cin, 3, padding=1)

    def encode(self, x):
        for block in self.encoder:
            x = block(x)
        flat = x.flatten(1)
        return self.to_mean(flat), self.to_log_var(flat)

    def forward(self, x, noise):
        mean, log_var = self.encode(x)
        z = mean + torch.exp(0.5 * log_var) * noise
        y = F.leaky_relu(self.from_latent(z), 0.01).view(x.shape[0], *self.deepest)
        for block in self.decoder:
            y = block(y)
        return self.out(y), mean, log_var


def soft_dice_loss(probabilities, targets, eps=1e-6):
    n, k = probabilities.shape[:2]
    p = probabilities.flatten(2)
    y = targets.flatten(2)
    overlap = (p * y).sum(2)
    norms = (p * p + y * y).sum(2) + eps
    return -2.0 / (k * n) * (overlap / norms).sum()


def vae_loss(reconstruction, x, mean, log_var):
    n = x.shape[0]
    squared = (reconstruction - x).square().sum() / n
    kl = -0.5 / n * (1 + log_var - mean.square() - log_var.exp()).sum()
    return squared + kl


def one_hot(labels, classes):
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def median_rate(step, slices, repeat, warmup=2):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()  # every step ends in .item(), which waits for the GPU
        times.append(time.perf_counter() - start)
    return slices / statistics.median(times)


def parse_case(name):
    """("unet-train", size, batch, demo) from e.g. "demo-unet-train-64-b8"."""
    demo = name.startswith("demo-")
    parts = name[len("demo-"):].split("-") if demo else name.split("-")
    return "-".join(parts[:-2]), int(parts[-2]), int(parts[-1].lstrip("b")), demo


def main():
    wanted = sys.argv[1].split(",")
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.manual_seed(0)
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    dev = torch.device(sys.argv[4] if len(sys.argv) > 4 else "cpu")
    # On CUDA: "default" leaves PyTorch as users run it (cuDNN convolutions
    # in TF32, cudnn.benchmark off); "no-tf32" turns TF32 off everywhere,
    # plain f32 like burn's kernels.
    numerics = sys.argv[5] if len(sys.argv) > 5 else "default"
    if dev.type == "cuda" and numerics == "no-tf32":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    C, K = 4, 4
    cases = {}
    paper = dict(widths=(32, 64, 128, 256), bottleneck=512)
    demo_arch = dict(widths=(8, 16, 32, 64), bottleneck=128)  # config/demo.toml
    for name in wanted:
        kind, size, batch, demo = parse_case(name)
        arch = demo_arch if demo else paper
        if kind == "unet-train":
            model = UNet(C, K, **arch).train().to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            x = torch.randn(batch, C, size, size, device=dev)
            y = one_hot(torch.randint(0, K, (batch, size, size), device=dev), K)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = soft_dice_loss(torch.softmax(model(x), 1), y)
                loss.backward()
                opt.step()
                loss.item()

        elif kind == "unet-infer":
            model = UNet(C, K, **arch).eval().to(dev)
            x = torch.randn(batch, C, size, size, device=dev)

            def step():
                with torch.no_grad():
                    torch.softmax(model(x), 1).sum().item()

        elif kind == "vae-train":
            vae = Vae(C, size, widths=arch["widths"]).train().to(dev)
            opt = torch.optim.Adam(vae.parameters(), lr=1e-4)
            x = torch.randn(batch, C, size, size, device=dev)

            def step():
                opt.zero_grad(set_to_none=True)
                noise = torch.randn(batch, 3, device=dev)
                r, m, lv = vae(x, noise)
                loss = vae_loss(r, x, m, lv)
                loss.backward()
                opt.step()
                loss.item()

        elif kind == "gradient-encode":
            unet = UNet(C, K, **arch).eval().to(dev)
            vae = Vae(C, size, widths=arch["widths"]).eval().to(dev)
            for p in list(unet.parameters()) + list(vae.parameters()):
                p.requires_grad_(False)
            x = torch.randn(batch, C, size, size, device=dev)
            y = one_hot(torch.randint(0, K, (batch, size, size), device=dev), K)

            def step():
                xi = x.clone().requires_grad_(True)
                logits = unet(xi)
                losses = [soft_dice_loss(torch.softmax(logits[i:i + 1], 1), y[i:i + 1]) for i in range(batch)]
                (g,) = torch.autograd.grad(torch.stack(losses).sum(), xi)
                with torch.no_grad():
                    vae.encode(x + 1e-3 * g)[0].sum().item()

        else:
            raise SystemExit(f"unknown case {name}")
        cases[name] = median_rate(step, batch, repeat)

    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(dev), "numerics": numerics, "cases": cases}))


if __name__ == "__main__":
    main()
