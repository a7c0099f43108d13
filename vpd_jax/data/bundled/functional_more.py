"""Functional problems a step harder than `functional_easy`: a loop with
state, a stack, a dictionary. Each has edge cases (empty input, one element,
ties) among its tests.
"""

from vpd_jax.data.bundled._spec import FunctionalSpec as F

PROBLEMS = [
    F("vpd_f16", "Pair With Sum", "train", "medium",
      "Given a list of integers nums and an integer target, return the indices "
      "[i, j] with i < j such that nums[i] + nums[j] == target. Exactly one "
      "such pair exists.",
      "pairWithSum", "nums: List[int], target: int", "List[int]",
      (([2, 7, 11, 15], 9), [0, 1]),
      (([3, 3], 6), ([1, 5, 3, 8], 11), ([-1, 4, 9], 3), ([0, 4, 3, 0], 0),
       ([5, 1, 2, 7, 10], 17)),
      "class Solution:\n    def pairWithSum(self, nums, target):\n"
      "        seen = {}\n"
      "        for j, x in enumerate(nums):\n"
      "            if target - x in seen:\n"
      "                return [seen[target - x], j]\n"
      "            seen.setdefault(x, j)\n"),
    F("vpd_f17", "Balanced Brackets", "train", "medium",
      "Given a string s made of the characters ()[]{}, return true if every "
      "bracket is closed by the same kind of bracket in the right order.",
      "isBalanced", "s: str", "bool",
      (("([]{})",), True),
      (("",), ("(]",), ("((",), ("{[()]}",), ("())(",), (")",)),
      "class Solution:\n    def isBalanced(self, s):\n"
      "        pairs = {')': '(', ']': '[', '}': '{'}\n"
      "        stack = []\n"
      "        for ch in s:\n"
      "            if ch in pairs:\n"
      "                if not stack or stack.pop() != pairs[ch]:\n"
      "                    return False\n"
      "            else:\n"
      "                stack.append(ch)\n"
      "        return not stack\n"),
    F("vpd_f18", "Best Contiguous Sum", "eval", "medium",
      "Given a non-empty list of integers nums, return the largest sum of a "
      "non-empty contiguous run of elements.",
      "maxRunSum", "nums: List[int]", "int",
      (([-2, 1, -3, 4, -1, 2, 1, -5, 4],), 6),
      (([1],), ([-3, -1, -2],), ([5, -1, 5],), ([0, 0, 0],), ([2, -10, 3],)),
      "class Solution:\n    def maxRunSum(self, nums):\n"
      "        best = cur = nums[0]\n"
      "        for x in nums[1:]:\n"
      "            cur = max(x, cur + x)\n"
      "            best = max(best, cur)\n"
      "        return best\n"),
    F("vpd_f19", "Merge Sorted Lists", "train", "medium",
      "Given two lists a and b, each sorted in increasing order, return one "
      "list holding all their elements in increasing order.",
      "mergeSorted", "a: List[int], b: List[int]", "List[int]",
      (([1, 4, 6], [2, 3, 7]), [1, 2, 3, 4, 6, 7]),
      (([], []), ([1], []), ([], [0]), ([1, 1], [1]), ([-5, 0], [-6, 10])),
      "class Solution:\n    def mergeSorted(self, a, b):\n"
      "        return sorted(a + b)\n"),
    F("vpd_f20", "Remove Duplicates", "train", "medium",
      "Given a list of integers nums, return the list with repeated values "
      "removed, keeping the first occurrence of each value in its original "
      "order.",
      "dedupe", "nums: List[int]", "List[int]",
      (([3, 1, 3, 2, 1],), [3, 1, 2]),
      (([],), ([7],), ([4, 4, 4],), ([1, 2, 3],), ([-1, 1, -1, 2, 1],)),
      "class Solution:\n    def dedupe(self, nums):\n"
      "        return list(dict.fromkeys(nums))\n"),
    F("vpd_f21", "Longest Word", "eval", "medium",
      "Given a sentence s of words separated by single spaces, return the "
      "longest word. If several words have the same greatest length, return "
      "the first of them.",
      "longestWord", "s: str", "str",
      (("the quick brown fox",), "quick"),
      (("a",), ("ab cd",), ("hi hello hey",), ("one three seven",),
       ("x yy zzz yy",)),
      "class Solution:\n    def longestWord(self, s):\n"
      "        best = ''\n"
      "        for w in s.split(' '):\n"
      "            if len(w) > len(best):\n"
      "                best = w\n"
      "        return best\n"),
    F("vpd_f22", "Run-Length Encoding", "train", "medium",
      "Given a string s, replace every run of equal consecutive characters by "
      "the character followed by the run length, and return the result.",
      "encodeRuns", "s: str", "str",
      (("aaabcc",), "a3b1c2"),
      (("",), ("a",), ("abc",), ("zzzzzzzzzzzz",), ("aabbaa",)),
      "from itertools import groupby\n\n"
      "class Solution:\n    def encodeRuns(self, s):\n"
      "        return ''.join(f'{k}{len(list(g))}' for k, g in groupby(s))\n"),
    F("vpd_f23", "Rotate Right", "train", "medium",
      "Given a list nums and an integer k >= 0, return the list rotated to the "
      "right by k steps (the last element moves to the front, k times).",
      "rotateRight", "nums: List[int], k: int", "List[int]",
      (([1, 2, 3, 4, 5], 2), [4, 5, 1, 2, 3]),
      (([], 3), ([1], 10), ([1, 2], 0), ([1, 2, 3], 3), ([1, 2, 3], 4)),
      "class Solution:\n    def rotateRight(self, nums, k):\n"
      "        if not nums:\n            return []\n"
      "        k %= len(nums)\n"
      "        return nums[-k:] + nums[:-k] if k else list(nums)\n"),
    F("vpd_f24", "Missing Number", "eval", "medium",
      "The list nums holds n distinct numbers taken from 0, 1, ..., n. Return "
      "the one number of that range that is missing.",
      "missingNumber", "nums: List[int]", "int",
      (([3, 0, 1],), 2),
      (([0],), ([1],), ([1, 2],), ([0, 1, 2, 3, 5, 6, 4, 8, 9],),
       ([2, 0, 3, 4, 1],)),
      "class Solution:\n    def missingNumber(self, nums):\n"
      "        n = len(nums)\n"
      "        return n * (n + 1) // 2 - sum(nums)\n"),
    F("vpd_f25", "Same Letters", "train", "medium",
      "Given two strings s and t, return true if t is a rearrangement of the "
      "characters of s, otherwise false.",
      "sameLetters", "s: str, t: str", "bool",
      (("listen", "silent"), True),
      (("", ""), ("a", "b"), ("aab", "aba"), ("aab", "abb"), ("abc", "ab")),
      "class Solution:\n    def sameLetters(self, s, t):\n"
      "        return sorted(s) == sorted(t)\n"),
    F("vpd_f26", "Find Position", "train", "medium",
      "Given a list nums sorted in increasing order with distinct values and an "
      "integer target, return the index of target in nums, or -1 if it is not "
      "there.",
      "findPosition", "nums: List[int], target: int", "int",
      (([1, 3, 5, 7], 5), 2),
      (([], 1), ([1], 1), ([1], 2), ([-3, -1, 4, 9], -3), ([2, 4, 6, 8], 8),
       ([2, 4, 6, 8], 5)),
      "import bisect\n\n"
      "class Solution:\n    def findPosition(self, nums, target):\n"
      "        i = bisect.bisect_left(nums, target)\n"
      "        return i if i < len(nums) and nums[i] == target else -1\n"),
    F("vpd_f27", "Climbing Stairs", "train", "medium",
      "You climb a staircase of n steps (n >= 1), taking 1 or 2 steps at a "
      "time. Return the number of different ways to reach the top.",
      "climbWays", "n: int", "int",
      ((3,), 3),
      ((1,), (2,), (4,), (10,), (45,)),
      "class Solution:\n    def climbWays(self, n):\n"
      "        a, b = 1, 1\n"
      "        for _ in range(n):\n"
      "            a, b = b, a + b\n"
      "        return a\n"),
    F("vpd_f28", "Digital Root", "train", "medium",
      "Given a non-negative integer n, repeatedly replace it by the sum of its "
      "digits until it has a single digit, and return that digit.",
      "digitalRoot", "n: int", "int",
      ((38,), 2),
      ((0,), (5,), (10,), (99999,), (123456789,)),
      "class Solution:\n    def digitalRoot(self, n):\n"
      "        while n >= 10:\n"
      "            n = sum(int(c) for c in str(n))\n"
      "        return n\n"),
    F("vpd_f29", "Capitalize Words", "eval", "medium",
      "Given a string s of lowercase words separated by single spaces, return "
      "it with the first letter of every word in uppercase.",
      "capitalizeWords", "s: str", "str",
      (("hello big world",), "Hello Big World"),
      (("a",), ("abc",), ("x y z",), ("already done",), ("python is fun",)),
      "class Solution:\n    def capitalizeWords(self, s):\n"
      "        return ' '.join(w[:1].upper() + w[1:] for w in s.split(' '))\n"),
]
