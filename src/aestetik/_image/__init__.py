"""Image morphology: patch geometry and the features of the tissue patch under each spot. Arrays in, arrays out."""
