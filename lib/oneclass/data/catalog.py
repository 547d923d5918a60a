"""The datasets the library reads: their names, layouts under the data root, classes and sources.

Everything here is static knowledge; class lists of folder datasets (``classes=None``) are read from disk.
"""
from __future__ import annotations

from .core import DatasetInfo

MNIST_CLASSES = tuple("0123456789")
FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man
maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree
plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail
snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout
tulip turtle wardrobe whale willow_tree wolf woman worm""".split())
CIFAR100_COARSE_CLASSES = tuple("""
aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices
household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes
large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees
vehicles_1 vehicles_2""".split())
MVTEC_CLASSES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                 "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
# MNIST-C (Mu & Gilmer 2019): the 15 corruptions are its "classes"; oneclass.mnist_c regenerates and reads it.
MNIST_C_CORRUPTIONS = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate",
                       "brightness", "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges")
# The 30 classes of Hendrycks et al.'s ImageNet-30 (folder names of its release); handy for `exclude`.
IMAGENET30_CLASSES = (
    "acorn", "airliner", "ambulance", "american_alligator", "banjo", "barn", "bikini", "digital_clock",
    "dragonfly", "dumbbell", "forklift", "goblet", "grand_piano", "hotdog", "hourglass", "manhole_cover",
    "mosque", "nail", "parking_meter", "pillow", "revolver", "rotary_dial_telephone", "schooner", "snowmobile",
    "soccer_ball", "stingray", "strawberry", "tank", "toaster", "volcano")

_TV = "torchvision.datasets.{}(root, download=True) (oneclass does this itself when online)"

DATASETS: dict[str, DatasetInfo] = {i.name: i for i in [
    DatasetInfo(
        "mnist", 1, 28, MNIST_CLASSES, ("train", "test"), "MNIST handwritten digits, 60k train / 10k test",
        layout="MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
        source="https://yann.lecun.com/exdb/mnist/ or " + _TV.format("MNIST"), downloadable=True),
    DatasetInfo(
        "fmnist", 1, 28, FMNIST_CLASSES, ("train", "test"), "Fashion-MNIST, 60k train / 10k test",
        layout="FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
        source="https://github.com/zalandoresearch/fashion-mnist or " + _TV.format("FashionMNIST"),
        downloadable=True),
    DatasetInfo(
        "emnist_letters", 1, 28, LETTERS, ("train", "test"),
        "EMNIST letters a-z (upper and lower case merged), 124,800 train / 20,800 test",
        layout="EMNIST/raw/emnist-letters-{train,test}-{images-idx3,labels-idx1}-ubyte[.gz]",
        source="https://www.nist.gov/itl/products-and-services/emnist-dataset or "
               "torchvision.datasets.EMNIST(root, split='letters', download=True) (oneclass does this itself "
               "when online)",
        downloadable=True),
    DatasetInfo(
        "cifar10", 3, 32, CIFAR10_CLASSES, ("train", "test"), "CIFAR-10, 50k train / 10k test",
        layout="cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
        source="https://www.cs.toronto.edu/~kriz/cifar.html or " + _TV.format("CIFAR10"), downloadable=True),
    DatasetInfo(
        "cifar100", 3, 32, CIFAR100_CLASSES, ("train", "test"), "CIFAR-100 with its 100 fine labels",
        layout="cifar-100-python/{train,test,meta}",
        source="https://www.cs.toronto.edu/~kriz/cifar.html or " + _TV.format("CIFAR100"), downloadable=True),
    DatasetInfo(
        "cifar100_coarse", 3, 32, CIFAR100_COARSE_CLASSES, ("train", "test"),
        "CIFAR-100 with its 20 coarse labels (superclasses)",
        layout="cifar-100-python/{train,test,meta}",
        source="https://www.cs.toronto.edu/~kriz/cifar.html or " + _TV.format("CIFAR100"), downloadable=True),
    DatasetInfo(
        "tiny_imagenet", 3, 64, None, ("train", "val"),
        "Tiny ImageNet, 200 wnid classes of 64x64 images; classes = sorted wnids, words in meta['words']",
        layout="tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,"
               "val/val_annotations.txt,val/images/*.JPEG}",
        source="http://cs231n.stanford.edu/tiny-imagenet-200.zip", test_split="val", downloadable=True),
    DatasetInfo(
        "imagenet30", 3, None, None, ("train", "test"), "ImageNet-30 (Hendrycks et al. 2019), 30 classes",
        layout="ImageNet30/{train,test}/<class>/**/*.{jpg,JPEG,png}",
        source="https://github.com/hendrycks/ss-ood (links to one_class_train.tar / one_class_test.tar)"),
    DatasetInfo(
        "imagenet22k", 3, None, None, ("train",),
        "ImageNet-22k (fall 2011) as an outlier-exposure corpus; classes = wnid folders",
        layout="imagenet22k/<wnid>/*.JPEG",
        source="https://image-net.org/download (fall11_whole.tar, one folder per wnid)", test_split=None),
    DatasetInfo(
        "imagenet1k_val", 3, None, None, ("val",),
        "ImageNet-1k validation images sorted into wnid folders (outlier exposure for PASCAL VOC)",
        layout="imagenet/val/<wnid>/*.JPEG",
        source="https://image-net.org/download (ILSVRC2012_img_val.tar, sorted into wnid folders with the "
               "usual valprep.sh)", test_split=None),
    DatasetInfo(
        "catsvsdogs", 3, None, ("Cat", "Dog"), ("train", "test"),
        "Kaggle/Microsoft Cats vs Dogs (PetImages); no official split: per class, files in natural "
        "filename order, every 5th (positions 4, 9, 14, ...) is test, the rest train (80/20)",
        layout="PetImages/{Cat,Dog}/*.jpg",
        source="https://www.microsoft.com/en-us/download/details.aspx?id=54765 (kagglecatsanddogs_*.zip)"),
    DatasetInfo(
        "folder", 3, None, None, ("train", "test"),
        "a class-folder tree of your own anywhere on disk: pass its path as the dataset ('~/my_tree'), or "
        "dataset 'folder' with root= the tree; classes = its subfolders; images of any size, resized when loaded",
        layout="<tree>/{train,test}/<class>/**/*.{png,jpg,...}, or <tree>/<class>/**/* (then every 5th file per "
               "class in natural filename order is test)",
        source="your own images"),
    DatasetInfo(
        "mvtec", 3, None, MVTEC_CLASSES, ("train", "test"),
        "MVTec-AD; a class is a category (any category folder on disk in the same layout works too); "
        "load with load_mvtec(category, split)",
        layout="mvtec_anomaly_detection/<category>/{train/good,test/<defect>,ground_truth/<defect>/"
               "<stem>_mask.png}",
        source="https://www.mvtec.com/company/research/datasets/mvtec-ad"),
    DatasetInfo(
        "mnist_c", 1, 28, MNIST_C_CORRUPTIONS, ("train", "test"),
        "MNIST-C: MNIST under 15 corruptions (one per 'class'); read per corruption with oneclass.mnist_c.load",
        layout="mnist_c/<corruption>/{train,test}_{images,labels}.npy",
        source="regenerated from MNIST by oneclass.mnist_c.generate, or the released set "
               "(https://github.com/google-research/mnist-c)"),
    DatasetInfo(
        "voc2007", 3, None, ("other", "horse"), ("train", "val", "trainval", "test"),
        "PASCAL VOC 2007 as horse vs other: label 1 (and anomaly 1) when any annotated object is a horse",
        layout="VOCdevkit/VOC2007/{JPEGImages/*.jpg,Annotations/*.xml,ImageSets/Main/<split>.txt}",
        source="http://host.robots.ox.ac.uk/pascal/VOC/voc2007/ (VOCtrainval_06-Nov-2007.tar, "
               "VOCtest_06-Nov-2007.tar)"),
]}

# Other spellings people use, mapped to the canonical keys of DATASETS.
ALIASES = {
    "fashion_mnist": "fmnist", "fashionmnist": "fmnist", "emnist": "emnist_letters",
    "cifar100_fine": "cifar100", "tinyimagenet": "tiny_imagenet", "tiny_imagenet_200": "tiny_imagenet",
    "imagenet_30": "imagenet30", "imagenet_22k": "imagenet22k", "mvtec_ad": "mvtec", "voc": "voc2007",
    "pascal_voc": "voc2007", "mnistc": "mnist_c", "mnist_corrupted": "mnist_c", "cats_vs_dogs": "catsvsdogs", "petimages": "catsvsdogs",
}


def canonical(dataset: str) -> str:
    """The key of DATASETS for ``dataset`` (case-insensitive, '-' or ' ' as '_', a few aliases)."""
    key = str(dataset).strip().lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    return key


def info(dataset: str) -> DatasetInfo:
    return DATASETS[canonical(dataset)]
