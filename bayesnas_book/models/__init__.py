"""Networks: evaluation nets built from genotypes (CIFAR-10, ImageNet mobile), and their counts."""
