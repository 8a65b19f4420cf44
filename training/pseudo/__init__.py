"""Pseudo-label generation methods of the seed papers, as pure functions on arrays.

One module per job (the store / ``ovp pseudo-label`` command builds on these):

- :mod:`~training.pseudo.superpoints`: Affinity3D instance generation (GZS DBSCAN, annotation-free FH).
- :mod:`~training.pseudo.oversegment`: Felzenszwalb-Huttenlocher on point graphs with normals.
- :mod:`~training.pseudo.instance_labels`: boxes ≥ 30 px, crop embeddings, Affinity3D Eq. 4.
- :mod:`~training.pseudo.affinity`: Affinity3D Eq. 5-8 and the temporal instance queue.
- :mod:`~training.pseudo.visibility`: Affinity3D Eq. 9-10 (or the depth buffer) per frame.
- :mod:`~training.pseudo.assembly`: PL' (seen ground truth, instance labels, ignore), seen/unseen split.
- :mod:`~training.pseudo.affinity3d`: the per-frame Affinity3D chain (streaming) and the "MC" baseline.
- :mod:`~training.pseudo.dense_targets`: compact exact storage of fused dense teacher features.
- :mod:`~training.pseudo.regions`: CNS region consistency (superpixels or SAM, max-vote, point regions).
- :mod:`~training.pseudo.unscene3d`: UnScene3D masked NCut pseudo masks.
- :mod:`~training.pseudo.pop3d`: POP-3D occupancy / feature-point targets and ray-cast labels.
- :mod:`~training.pseudo.quality`: measuring pseudo labels and masks against the synthetic truth.
- :mod:`~training.pseudo.synthetic_eval`: Affinity3D's label variants on the synthetic street.
"""
