"""Rate-distortion and speed evaluation of hvq against other codecs (``hvq bench``).

One job per module, in the order a run uses them::

    metrics     PSNR, MS-SSIM, MS-SSIM in dB, SSIMULACRA 2 of a decoded image against its original
    ssimulacra  SSIMULACRA 2 itself (libjxl's perceptual metric, checked against its C++ tool)
    classical   JPEG, WebP, AVIF, JPEG 2000 (Pillow) and JPEG XL (imagecodecs): bytes and back;
                and "downscale + codec" (avif-down4: shrink, code, upscale)
    hvq_runs    hvq through its own Codec: every level alone (at each quality) and every stored subset
    records     the frozen records of a run and their means per codec and setting
    sweep       runs the codecs over a folder of images, in worker processes if asked
    bjontegaard BD-rate / BD-PSNR of hvq against each codec, on the overlapping range only
    envelope    hvq's curve over its levels; the best other codec at a given rate
    anchors     published learned-codec curves (CompressAI's Kodak results) to draw and compare
    speed       encode/decode time and peak memory, one child process per codec
    plots       the RD figures (PSNR, MS-SSIM (dB), SSIMULACRA 2 against bpp) as PNG bytes
    report      JSON, CSV and markdown text of the results

Nothing here writes files or knows the command line: ``cli/bench.py`` does.
Torch, matplotlib and the codec libraries are imported where they are used,
so that a worker or a child process loads only what its codec needs.
"""
