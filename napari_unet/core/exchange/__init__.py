"""Models in and out of formats other tools read: bioimage.io model packages (:mod:`.bioimageio`)."""
