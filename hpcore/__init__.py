"""hpcore: predict some optimizer steps instead of computing them."""
