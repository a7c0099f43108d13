"""Stdin problems a step harder than `stdin_easy`: a loop, a condition, a
small algorithm. Still short statements with one worked example.
"""

from vpd_jax.data.bundled._spec import StdinSpec as S

PROBLEMS = [
    S("vpd_s20", "FizzBuzz", "train", "medium",
      "Read an integer n. For each i from 1 to n print one line: FizzBuzz if i "
      "is divisible by 15, Fizz if divisible by 3, Buzz if divisible by 5, "
      "otherwise i itself.",
      ("5\n", "1\n2\nFizz\n4\nBuzz\n"),
      ("1\n", "3\n", "15\n", "16\n", "0\n"),
      "n = int(input())\n"
      "for i in range(1, n + 1):\n"
      "    if i % 15 == 0:\n        print('FizzBuzz')\n"
      "    elif i % 3 == 0:\n        print('Fizz')\n"
      "    elif i % 5 == 0:\n        print('Buzz')\n"
      "    else:\n        print(i)\n"),
    S("vpd_s21", "Distinct Values", "train", "medium",
      "The first line holds n (n >= 1), the second n integers. Print how many "
      "different values appear.",
      ("5\n1 2 2 3 1\n", "3\n"),
      ("1\n7\n", "4\n5 5 5 5\n", "6\n-1 1 -1 1 0 0\n", "3\n1 2 3\n",
       "8\n9 8 7 6 5 4 3 2\n"),
      "input()\nprint(len(set(input().split())))\n"),
    S("vpd_s22", "Second Largest", "eval", "medium",
      "The first line holds n, the second n integers with at least two "
      "different values. Print the second largest distinct value.",
      ("5\n4 1 4 3 2\n", "3\n"),
      ("2\n1 2\n", "4\n5 5 4 4\n", "3\n-1 -2 -3\n", "6\n10 9 10 8 9 7\n",
       "5\n0 0 0 0 1\n"),
      "input()\nvals = sorted(set(map(int, input().split())))\nprint(vals[-2])\n"),
    S("vpd_s23", "Fibonacci Number", "train", "medium",
      "Read n (0 <= n <= 90). Print the n-th Fibonacci number, where F(0) = 0, "
      "F(1) = 1 and F(n) = F(n-1) + F(n-2).",
      ("10\n", "55\n"),
      ("0\n", "1\n", "2\n", "50\n", "90\n"),
      "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\n"
      "print(a)\n"),
    S("vpd_s24", "Prime Test", "train", "medium",
      "Read an integer n (n >= 1). Print YES if n is a prime number, otherwise "
      "print NO. (1 is not prime.)",
      ("7\n", "YES\n"),
      ("1\n", "2\n", "9\n", "97\n", "1000000007\n", "1000000\n"),
      "n = int(input())\n"
      "ok = n >= 2 and all(n % d for d in range(2, int(n ** 0.5) + 1))\n"
      "print('YES' if ok else 'NO')\n"),
    S("vpd_s25", "Greatest Common Divisor", "train", "medium",
      "Read two positive integers a and b on one line. Print their greatest "
      "common divisor.",
      ("12 18\n", "6\n"),
      ("7 13\n", "5 5\n", "1 1000000\n", "1000000000 999999999\n", "48 180\n"),
      "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b))\n"),
    S("vpd_s26", "Sum of Digits", "eval", "medium",
      "Read a non-negative integer n. Print the sum of its decimal digits.",
      ("1234\n", "10\n"),
      ("0\n", "9\n", "1000000\n", "99999999999999999999\n", "505\n"),
      "print(sum(int(c) for c in input().strip()))\n"),
    S("vpd_s27", "To Binary", "train", "medium",
      "Read a non-negative integer n. Print n written in binary, without "
      "leading zeros (0 is printed as 0).",
      ("10\n", "1010\n"),
      ("0\n", "1\n", "2\n", "255\n", "1024\n"),
      "print(bin(int(input()))[2:])\n"),
    S("vpd_s28", "Most Frequent Letter", "train", "medium",
      "Read one word of lowercase letters. Print the letter that appears most "
      "often. If several letters tie, print the one that comes first in the "
      "alphabet.",
      ("banana\n", "a\n"),
      ("z\n", "abc\n", "mississippi\n", "bbaa\n", "zzzyyy\n"),
      "from collections import Counter\n"
      "c = Counter(input().strip())\n"
      "best = max(c.values())\n"
      "print(min(ch for ch in c if c[ch] == best))\n"),
    S("vpd_s29", "Sort Numbers", "eval", "medium",
      "The first line holds n (n >= 1), the second n integers. Print them in "
      "increasing order on one line, separated by single spaces.",
      ("4\n3 1 4 1\n", "1 1 3 4\n"),
      ("1\n0\n", "3\n-1 -3 -2\n", "5\n5 4 3 2 1\n", "2\n7 7\n",
       "6\n100 -100 0 50 -50 25\n"),
      "input()\nprint(' '.join(map(str, sorted(map(int, input().split())))))\n"),
    S("vpd_s30", "Prefix Sums", "train", "medium",
      "The first line holds n (n >= 1), the second n integers. Print n numbers "
      "on one line separated by spaces: the i-th is the sum of the first i "
      "input numbers.",
      ("4\n1 2 3 4\n", "1 3 6 10\n"),
      ("1\n5\n", "3\n-1 1 -1\n", "5\n0 0 0 0 0\n", "2\n1000000000 1000000000\n",
       "4\n4 -2 7 0\n"),
      "from itertools import accumulate\ninput()\n"
      "print(' '.join(map(str, accumulate(map(int, input().split())))))\n"),
    S("vpd_s31", "Count Primes", "train", "medium",
      "Read an integer n (0 <= n <= 100000). Print how many prime numbers are "
      "less than or equal to n.",
      ("10\n", "4\n"),
      ("0\n", "1\n", "2\n", "100\n", "100000\n"),
      "n = int(input())\nsieve = [True] * (n + 1)\ncount = 0\n"
      "for i in range(2, n + 1):\n"
      "    if sieve[i]:\n"
      "        count += 1\n"
      "        for j in range(i * i, n + 1, i):\n"
      "            sieve[j] = False\n"
      "print(count)\n"),
    S("vpd_s32", "Caesar Shift", "train", "medium",
      "The first line holds a word of lowercase letters, the second an integer "
      "k (0 <= k <= 25). Replace every letter by the letter k places later in "
      "the alphabet, wrapping from z back to a, and print the result.",
      ("abc\n1\n", "bcd\n"),
      ("xyz\n3\n", "hello\n0\n", "a\n25\n", "zebra\n13\n", "code\n5\n"),
      "s = input().strip()\nk = int(input())\n"
      "print(''.join(chr((ord(c) - 97 + k) % 26 + 97) for c in s))\n"),
    S("vpd_s33", "Row Sums", "eval", "medium",
      "The first line holds r and c. Then r lines follow, each with c integers. "
      "Print r lines: the sum of each row.",
      ("2 3\n1 2 3\n4 5 6\n", "6\n15\n"),
      ("1 1\n7\n", "3 1\n1\n-1\n0\n", "2 2\n-5 5\n10 10\n",
       "1 4\n1 1 1 1\n", "3 2\n0 0\n1 2\n3 4\n"),
      "r, c = map(int, input().split())\n"
      "for _ in range(r):\n    print(sum(map(int, input().split())))\n"),
    S("vpd_s34", "Anagrams", "train", "medium",
      "Read two words of lowercase letters, one per line. Print YES if one is "
      "a rearrangement of the letters of the other, otherwise NO.",
      ("listen\nsilent\n", "YES\n"),
      ("abc\nabd\n", "a\na\n", "aab\nabb\n", "night\nthing\n", "ab\nabc\n"),
      "a = input().strip()\nb = input().strip()\n"
      "print('YES' if sorted(a) == sorted(b) else 'NO')\n"),
]
