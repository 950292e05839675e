"""Train the paper's 3D CNN: `python train.py`, a sweep: `python train.py -m optim.lr=0.01,0.001,0.0001`."""

from mer.commands.entrypoints import train_main

if __name__ == "__main__":
    train_main()
