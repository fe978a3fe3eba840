#!/bin/bash
# runone.sh NAME A B REPEATS
cd /work/main
date +%s.%N > /tmp/gs/$1.start
python3 bench/compare_builds.py --a $2 --b $3 \
    --trace ../shared/data/fl-resnet-digits.npz --trace ../shared/data/fl-vgg-digits.npz \
    --bounds 1e-2 1e-3 --repeats $4 --out /tmp/gs/$1 --name compare > /tmp/gs/$1.out 2> /tmp/gs/$1.err &
P=$!
python3 /tmp/gs/sampler.py $P /tmp/gs/$1.load > /dev/null 2>&1 &
wait $P; echo "$1 rc $?" >> /tmp/gs/$1.err
