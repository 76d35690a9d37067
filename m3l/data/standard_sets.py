"""The standard restoration data sets: where they come from, how to check them, where they live.

Each :class:`StandardSet` names the archive it comes in (``url``, and the folder inside it holding
the images, ``subdir``), how many images it has (``files``) and, where pinned, the sha256 of its
*content*: the sha256 of the sorted lines ``"<relative path> <sha256 of the file>\\n"`` over its
images. Content checksums (rather than archive ones) hold for a folder a user already has, and for
GitHub archives, whose bytes are not stable.

:func:`locate` returns a folder holding the set: the user's own ``root`` (checked), or the cache
(``$M3L_DATA``, else ``$M3L_CACHE/datasets``, else ``~/.cache/m3l/datasets``), downloading and
unpacking the archive there on first use (torch.hub's downloader, with a progress bar on a terminal; through
a temporary name and a rename). An archive holding several sets is downloaded once: the other sets it holds
are unpacked into the cache with the first. When the download
fails (offline), or the set needs a manual download (licence or sign-in: GoPro, SIDD), one
:class:`~m3l.errors.M3LError` line names the URL and the folder to put the images in.

``python -m m3l.data.standard_sets`` lists the sets; ``python -m m3l.data.standard_sets NAME`` prints
the folder of one (downloading it if needed), for use in configs: ``data.test_sets={set12: $(...)}``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from m3l.errors import M3LError
from m3l.io.images import list_images


@dataclass(frozen=True)
class StandardSet:
    name: str
    url: str                    # an archive (zip / tar), or a page to download from by hand (manual=True)
    subdir: str                 # folder inside the archive holding the images ("" for its root)
    files: int                  # image files expected (recursively)
    sha256: str | None = None   # content checksum (see the module docstring); None: not pinned yet
    manual: bool = False        # needs a download by hand (licence, sign-in)
    what: str = ""


DNCNN = "https://github.com/cszn/DnCNN/archive/refs/heads/master.zip"
FFDNET = "https://github.com/cszn/FFDNet/archive/refs/heads/master.zip"
FBCNN = "https://github.com/jiaxi-jiang/FBCNN/archive/refs/heads/main.zip"
DAVIS = "https://data.vision.ee.ethz.ch/csergi/share/davis"
RAIN13K_TRAIN = "https://drive.google.com/file/d/14BidJeG4nSNuFNFDf99K-7eErCq4i47t/view"  # Restormer's train.zip
RAIN13K_TEST = "https://drive.google.com/file/d/1P_-RAvltEoEhfT-9GrWRdpEi6NSswTs8/view"  # Restormer's test.zip
DPDD_TEST = "https://drive.google.com/file/d/1dDWUQ_D93XGtcywoUcZE1HOXCV4EuLyw/view"  # Restormer's DPDD test.zip
LOL_V2 = "https://drive.google.com/file/d/1Ou9EljYZW8o5dbDCf9R34FS8Pd8kEp2U/view"  # RetinexFormer's LOL-v2
DEHAZEFORMER = "https://drive.google.com/drive/folders/1Yy_GH6_bydYPU6_JJzFQwig4LTh86VI4"  # DehazeFormer's data

SETS: dict[str, StandardSet] = {s.name: s for s in [
    StandardSet("train400", DNCNN, "DnCNN-master/TrainingCodes/DnCNN_TrainingCodes_v1.0/data/Train400", 400,
                "2d26cbe407ec9880eeff0abf4c9deae1a07810a611a1485fc3851efb3c35f214",
                what="gray 180x180 BSD crops, DnCNN's training set"),
    StandardSet("set12", DNCNN, "DnCNN-master/testsets/Set12", 12,
                "e3273646cb8c7d257c49a86541151cd24f6c5a46b27584a32e4fcbf5499ff364", what="gray denoising test set"),
    StandardSet("bsd68", DNCNN, "DnCNN-master/testsets/BSD68", 68,
                "cd6f203bbd74ac43de1501aaf2ca7c05a1421ebe91e827d24eaa1be48dbea67f", what="gray denoising test set"),
    StandardSet("cbsd68", FFDNET, "FFDNet-master/testsets/CBSD68", 68,
                "cc813e61cac9f22d98728f9d82d4d1d89d51f3235f52f321f1164bb79e17a18e", what="color denoising test set"),
    StandardSet("kodak24", FFDNET, "FFDNet-master/testsets/Kodak24", 24,
                "46f68ae6ca8412b7fcad6f4c658ca55986960b4c5c02c27c14aa60c8eb21d2f3", what="color denoising test set"),
    StandardSet("mcmaster", FFDNET, "FFDNet-master/testsets/McMaster", 18,
                "e1b926c9855155f9ef39b883f4a801a57824b0a665add8a6cc7c4e422d487f1b", what="color denoising test set"),
    StandardSet("live1_gray", FBCNN, "FBCNN-main/testsets/LIVE1_gray", 29,
                "7579841adf04d209c163e5ea12c7654da847a399486d972afddfe59f279ad41b", what="gray JPEG test set"),
    StandardSet("live1_color", FBCNN, "FBCNN-main/testsets/LIVE1_color", 29,
                "1256528636bd0f9ede8dd3b63622e1e41d61dbab8e88e4dc061249d5593e7159", what="color JPEG test set"),
    StandardSet("classic5", FBCNN, "FBCNN-main/testsets/Classic5", 5,
                "80d6985dcd2069e1ce477a2603c34e78ec25c356286c41b4850e4d83974b51e1", what="gray JPEG test set"),
    StandardSet("div2k_train", "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip", "DIV2K_train_HR", 800,
                what="2K color training images (DRUNet, FBCNN, SwinIR)"),
    StandardSet("div2k_valid", "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip", "DIV2K_valid_HR", 100,
                what="2K color validation images"),
    StandardSet("gopro", "https://seungjunnah.github.io/Datasets/gopro", "GOPRO_Large", 9642, manual=True,
                what="deblurring pairs: 2103 train + 1111 test frames, blur/, blur_gamma/ and sharp/ per sequence"),
    # Video sets (frame folders, one per sequence; data=video; preset=paper for model=fastdvdnet). Not downloaded
    # here (no network when written): frame counts are the DAVIS 2017 release's (train 60 sequences / 4209 frames +
    # val 30 / 1999; test-dev 30 / 2086) and, for Set8, the FastDVDnet paper's 85 frames a sequence, NOT verified
    # against the files; no content checksum is pinned (sha256 None) until someone checks a download.
    StandardSet("davis_train", f"{DAVIS}/DAVIS-2017-trainval-480p.zip", "DAVIS/JPEGImages/480p", 6208,
                what="video training set (FastDVDnet): 90 sequences (60 train + 30 val) of 854x480 JPEG frames; the "
                "authors list the sequences they used in a gist linked from their README"),
    StandardSet("davis_test", f"{DAVIS}/DAVIS-2017-test-dev-480p.zip", "DAVIS/JPEGImages/480p", 2086,
                what="video test set (DAVIS-test): 30 sequences of 854x480 JPEG frames (FastDVDnet used <= 85 each)"),
    StandardSet("set8", "https://github.com/m-tassano/fastdvdnet", "", 680, manual=True,
                what="video test set: 8 sequences, Derf's 480p tractor, touchdown, park_joy, sunflower + GoPro 540p "
                "hypersmooth, motorbike, rafting, snowboard (the FastDVDnet authors' Drive folder test_sequences), "
                "85 frames each (unverified)"),
    # DVD (Su et al. 2017) as CDVD-TSP and Shift-Net test it: their Drive folder of GoPro / DVD copies, unpacked to
    # dataset/DVD/test/{blur,gt}/<sequence>/ (Shift-Net's inference/test_deblur*.py). Count as the authors state it
    # (10 test videos, 1000 frames), NOT verified against the files; no content checksum pinned.
    StandardSet("dvd", "https://drive.google.com/drive/folders/1lCZS0mHJcnQutyupM62tNUJl8JIW8i3Q", "DVD/test", 2000,
                manual=True, what="video deblurring test clips: 10 sequences as frame folders blur/<seq>/ and "
                "gt/<seq>/ (DVD, Su et al. 2017, 1000 frame pairs; the CDVD-TSP / Shift-Net copy, data.input=/blur/ "
                "data.target=/gt/); count unverified"),
    StandardSet("sidd_medium", "https://www.eecs.yorku.ca/~kamel/sidd/dataset.php", "SIDD_Medium_Srgb", 640,
                manual=True, what="real noisy / ground-truth sRGB pairs (320 pairs)"),
    # The test pairs Restormer's download scripts fetch for deblurring (Motion_Deblurring/download_data.py: HIDE,
    # 2025 pairs) and real denoising (Denoising/download_data.py: SIDD's 1280 validation blocks as PNG pairs), and
    # Urban100 (Huang et al. 2015), the SwinIR / SCUNet / Restormer denoising set read as RGB or gray.
    StandardSet("hide", "https://github.com/swz30/Restormer/blob/main/Motion_Deblurring/download_data.py", "test/HIDE",
                4050, manual=True, what="motion deblurring pairs input/ target/ (HIDE, 2025 pairs, Shen et al. 2019; "
                "Restormer / MPRNet tables; trained on GoPro); count unverified"),
    StandardSet("sidd", "https://github.com/swz30/Restormer/blob/main/Denoising/download_data.py", "test/SIDD", 2560,
                manual=True, what="real denoising pairs input/ target/ (SIDD validation: 1280 blocks of 256x256, "
                "Abdelhamed et al. 2018; NAFNet / Restormer / Uformer / KBNet / MPRNet tables); count unverified"),
    StandardSet("urban100", "https://github.com/jbhuang0604/SelfExSR", "Urban100", 100, manual=True,
                what="100 urban photos with regular structures (Huang et al. 2015; the high-resolution images of "
                "SelfExSR's Urban100 set); SwinIR / SCUNet / Restormer denoising tables; count unverified"),
    # Paired test sets of issue 21's tasks, as the papers' authors distribute them (Google Drive, hence manual=True:
    # the user downloads by hand and unpacks so that the folder named here holds the pair folders). Counts are
    # image files (both halves of each pair) as the authors state them, NOT verified against the files; no
    # content checksum is pinned (sha256 None). Test with data=paired (or data=deraining) and the pair folders
    # in data.input / data.target, e.g. data.input=/input/ data.target=/target/.
    # Deraining: Restormer's Deraining/download_data.py fetches train.zip (Drive id rain13k_train, unpacked to
    # train/Rain13K/{input,target}) and one test.zip (rain13k_test, unpacked to test/<Set>/{input,target}); the set
    # sizes are MPRNet's Table 1.
    StandardSet("rain13k", RAIN13K_TRAIN, "train/Rain13K", 27424, manual=True,
                what="deraining training pairs input/ target/ (13712: Rain14000's 11200 train + Rain1800 + Rain800's "
                "700 + Rain12, MPRNet Table 1; Restormer's and MPRNet's training set); count unverified"),
    StandardSet("rain100l", RAIN13K_TEST, "test/Rain100L", 200, manual=True,
                what="deraining pairs input/ target/ (100, Yang et al. 2017; Restormer / MPRNet Table 1, Y PSNR/SSIM); "
                "count unverified"),
    StandardSet("rain100h", RAIN13K_TEST, "test/Rain100H", 200, manual=True,
                what="deraining pairs input/ target/ (100, Yang et al. 2017; Restormer / MPRNet Table 1, Y PSNR/SSIM); "
                "count unverified"),
    StandardSet("test100", RAIN13K_TEST, "test/Test100", 200, manual=True,
                what="deraining pairs input/ target/ (100, Rain800's test split, Zhang et al. 2019; Restormer / MPRNet "
                "Table 1, Y PSNR/SSIM); count unverified"),
    StandardSet("test1200", RAIN13K_TEST, "test/Test1200", 2400, manual=True,
                what="deraining pairs input/ target/ (1200, Rain1200 / DID-MDN, Zhang & Patel 2018; Restormer / MPRNet "
                "Table 1, Y PSNR/SSIM); count unverified"),
    StandardSet("test2800", RAIN13K_TEST, "test/Test2800", 5600, manual=True,
                what="deraining pairs input/ target/ (2800, Rain14000's test split, Fu et al. 2017; Restormer / MPRNet "
                "Table 1, Y PSNR/SSIM); count unverified"),
    # Defocus: Restormer's Defocus_Deblurring/download_data.py (Drive id dpdd_test) unpacks test/ to Datasets/test/DPDD.
    StandardSet("dpdd", DPDD_TEST, "test", 304, manual=True,
                what="defocus deblurring test set (DPDD, Abuolaim & Brown 2020): 76 scenes as inputL/ inputR/ inputC/ "
                "target/ (+ indoor_labels.npy, outdoor_labels.npy splitting them indoor / outdoor); single-image defocus "
                "deblurring pairs inputC/ with target/ (Restormer Table 3); count unverified"),
    # Low light. LOL-v1 as its authors release it (LOLdataset.zip from the BMVC 2018 page, eval15/{low,high}, 15
    # pairs); RetinexFormer's copy of it (Drive 1L-kqSQyrmMueBh_ziWoPFhfsAh50h20H) holds the same 15 pairs as
    # LOLv1/Test/{input,target}. LOL-v2 as RetinexFormer's README links it (Drive 1Ou9EljYZW8o5dbDCf9R34FS8Pd8kEp2U).
    StandardSet("lol_v1", "https://daooshee.github.io/BMVC2018website/", "eval15", 30, manual=True,
                what="low-light pairs low/ high/ (LOL eval15, 15 pairs, Wei et al. 2018; RetinexFormer Table 1); "
                "RetinexFormer's Drive copy names them input/ target/ (LOLv1/Test): then pass data.input=/input/ "
                "data.target=/target/; count unverified"),
    StandardSet("lol_v2_real", LOL_V2, "LOLv2/Real_captured/Test", 200, manual=True,
                what="low-light pairs Low/ Normal/ (LOL-v2 real captured test, 100 pairs, Yang et al. 2021; "
                "RetinexFormer Table 1); count unverified"),
    StandardSet("lol_v2_synthetic", LOL_V2, "LOLv2/Synthetic/Test", 200, manual=True,
                what="low-light pairs Low/ Normal/ (LOL-v2 synthetic test, 100 pairs, Yang et al. 2021; "
                "RetinexFormer Table 1); count unverified"),
    # Dehazing: RESIDE's SOTS as DehazeFormer rearranged it (its Drive folder, data/RESIDE-IN|RESIDE-OUT/test/{GT,hazy}
    # with one file name per pair); MixDehazeNet uses the same copy.
    StandardSet("sots_indoor", DEHAZEFORMER, "RESIDE-IN/test", 1000, manual=True,
                what="dehazing pairs hazy/ GT/, same file names (RESIDE SOTS indoor, 500 pairs, Li et al. 2019; "
                "DehazeFormer / MixDehazeNet tables); count unverified"),
    StandardSet("sots_outdoor", DEHAZEFORMER, "RESIDE-OUT/test", 1000, manual=True,
                what="dehazing pairs hazy/ GT/, same file names (RESIDE SOTS outdoor, 500 pairs, Li et al. 2019; "
                "DehazeFormer / MixDehazeNet tables); count unverified"),
]}


def cache_root() -> Path:
    """Where downloaded sets live: ``$M3L_DATA``, else ``$M3L_CACHE/datasets``, else ``~/.cache/m3l/datasets``."""
    if os.environ.get("M3L_DATA"):
        return Path(os.environ["M3L_DATA"]).expanduser()
    cache = os.environ.get("M3L_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "m3l"
    return Path(cache).expanduser() / "datasets"


def content_sha256(folder: Path) -> str:
    """The content checksum of the images under ``folder`` (see the module docstring)."""
    files = sorted(list_images(folder), key=lambda f: f.relative_to(folder).as_posix())
    lines = "".join(f"{f.relative_to(folder).as_posix()} {hashlib.sha256(f.read_bytes()).hexdigest()}\n"
                    for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def check(spec: StandardSet, folder: Path) -> str | None:
    """``None`` if ``folder`` holds the set, else what is wrong with it."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    count = len(list_images(folder))
    if count != spec.files:
        return f"{folder} has {count} images, {spec.name} has {spec.files}"
    if spec.sha256 and content_sha256(folder) != spec.sha256:
        return f"{folder} has the right number of images but not {spec.name}'s content (sha256 differs)"
    return None


def _hint(spec: StandardSet, folder: Path) -> str:
    inside = f" (the folder {spec.subdir} of the archive)" if spec.subdir and not spec.manual else ""
    return f"download {spec.url} by hand and put the {spec.files} images{inside} in {folder}"


def _unpack(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")
    else:
        raise M3LError(f"{archive} is neither a zip nor a tar archive")


def fetch(url: str, target: Path) -> None:
    """Download ``url`` (``https://``, ``file://``) to ``target`` with torch.hub's downloader, as m3l.hub does for
    weights: a progress bar on a terminal, and a temporary file renamed when complete."""
    from torch.hub import download_url_to_file

    print(f"downloading {url}", file=sys.stderr)
    download_url_to_file(url, str(target), progress=sys.stderr.isatty())


def _move(source: Path, target: Path) -> bool:
    """Rename the folder ``source`` to ``target``; False when another process put ``target`` there first."""
    try:
        os.replace(source, target)
    except OSError:
        if target.is_dir():
            return False
        raise
    return True


def download(spec: StandardSet, folder: Path) -> Path:
    """Download ``spec``'s archive once and unpack from it, each checked and atomically, ``spec``'s ``subdir``
    into ``folder`` and every other set the archive holds (DnCNN's: Train400, Set12, BSD68) that is not in
    ``folder.parent`` yet, so that the next of them needs no download."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{spec.name}.", dir=folder.parent) as tmp:
        archive = Path(tmp) / "archive"
        try:
            fetch(spec.url, archive)
        except (OSError, ValueError) as error:
            raise M3LError(f"standard set {spec.name}: cannot download {spec.url} ({error}); "
                           f"{_hint(spec, folder)}") from None
        _unpack(archive, Path(tmp) / "unpacked")
        source = Path(tmp) / "unpacked" / spec.subdir
        problem = check(spec, source)
        if problem:
            raise M3LError(f"standard set {spec.name}: the download from {spec.url} is not as expected: "
                           f"{problem.replace(str(source), spec.subdir or 'the archive')}; {_hint(spec, folder)}")
        _move(source, folder)
        others = [s for s in SETS.values() if s.url == spec.url and s.name != spec.name and not s.manual]
        for other in others:
            source, target = Path(tmp) / "unpacked" / other.subdir, folder.parent / other.name
            if not target.exists() and check(other, source) is None and _move(source, target):
                print(f"standard set {other.name}: unpacked from the same archive into {target}", file=sys.stderr)
    return folder


def locate(name: str, root: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """The folder holding standard set ``name``: ``root`` if given (checked), else the cache, downloading into it."""
    if name not in SETS:
        raise M3LError(f"unknown standard set {name!r}; known: {', '.join(SETS)}")
    spec = SETS[name]
    if root is not None:
        folder = Path(root).expanduser()
        problem = check(spec, folder)
        if problem:
            raise M3LError(f"standard set {name}: {problem}; {_hint(spec, folder)}")
        return folder
    folder = cache_root() / name
    if folder.exists():
        problem = check(spec, folder)
        if problem:
            raise M3LError(f"standard set {name}: {problem}; remove it, or {_hint(spec, folder)}")
        return folder
    if spec.manual or not allow_download:
        raise M3LError(f"standard set {name} is not in {folder}: {_hint(spec, folder)}")
    return download(spec, folder)


def main(argv: list[str]) -> int:
    if not argv:
        for spec in SETS.values():
            print(f"{spec.name:12s} {spec.files:5d} images  {spec.what}  ({spec.url})")
        return 0
    try:
        print(locate(argv[0], argv[1] if len(argv) > 1 else None))
    except M3LError as error:
        print(f"m3l standard_sets: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
