"""Run the tiny EmoSEM on a generated artwork and print mask sizes and explanations."""

from emosem.demo import main

if __name__ == "__main__":
    main()
